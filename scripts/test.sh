#!/usr/bin/env bash
# The whole test suite: unit tests, and integration tests against real swtpm processes,
# real kmsd processes and real sockets. Installs missing Debian packages first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export TSS2_LOG=all+NONE
cargo test --locked --all-targets "$@"
