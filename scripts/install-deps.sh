#!/usr/bin/env bash
# Installs the Debian packages kmsd needs to build and test: a software TPM (swtpm),
# the TSS2 libraries (libtss2-dev), tpm2-tools, Prometheus (promtool, for the monitoring
# checks) and the build helpers. Installs only what is missing. Needs root or sudo.
set -euo pipefail

packages=(swtpm swtpm-tools libtss2-dev tpm2-tools pkg-config prometheus curl util-linux systemd python3)
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
if ((${#missing[@]} == 0)); then
    exit 0
fi
echo "installing: ${missing[*]}" >&2
sudo=""
if [[ $(id -u) != 0 ]]; then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
