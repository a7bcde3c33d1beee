#!/bin/sh
# Checks the shipped Prometheus rules: syntax (promtool check rules) and behaviour
# (promtool test rules). Needs promtool (Debian: apt-get install prometheus).
set -eu
cd "$(dirname "$0")/.."
promtool check rules monitoring/recording-rules.yml monitoring/alert-rules.yml
promtool test rules monitoring/tests/*.yml
if command -v python3 >/dev/null 2>&1; then
  python3 -m json.tool monitoring/grafana-dashboard.json >/dev/null
fi
echo "monitoring: OK"
