#!/usr/bin/env bash
# Installs the Debian packages kmsd needs to build, test and benchmark: a software TPM (swtpm),
# the TSS2 libraries (libtss2-dev), tpm2-tools, the age CLI (the recovery escrow's interop
# test), Prometheus (promtool, for the monitoring checks), openssl and GNU time (the
# benchmarks' ceilings and peak memory) and the build helpers, then the unchanged AWS
# clients the TCP endpoint tests
# drive (boto3, aws-cli v1, the AWS Encryption SDK CLI, pinned below) into
# /opt/kmsd-test-python, world-readable, so that tests can run them as other uids with
# Debian's /usr/bin/python3. Installs only what is missing. Needs root or sudo.
set -euo pipefail

packages=(swtpm swtpm-tools libtss2-dev tpm2-tools age pkg-config prometheus curl util-linux systemd python3 openssl time)
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
sudo=""
if [[ $(id -u) != 0 ]]; then
    sudo="sudo"
fi
if ((${#missing[@]} > 0)); then
    echo "installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The AWS clients of the interop tests (PyPI), pinned.
python_clients=(boto3==1.44.8 awscli==1.46.3 aws-encryption-sdk==3.3.1 aws-encryption-sdk-cli==4.3.0)
python_dir=/opt/kmsd-test-python
stamp="$python_dir/.kmsd-clients"
if [[ "$(cat "$stamp" 2>/dev/null)" != "${python_clients[*]}" ]]; then
    pip=(python3 -m pip)
    if ! "${pip[@]}" --version >/dev/null 2>&1; then
        $sudo apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
        pip=(/usr/bin/python3 -m pip)
    fi
    echo "installing into $python_dir: ${python_clients[*]}" >&2
    $sudo rm -rf "$python_dir"
    $sudo "${pip[@]}" install -q --disable-pip-version-check --no-warn-script-location \
        --break-system-packages --target "$python_dir" "${python_clients[@]}" 2>&1 \
        | grep -v "Running pip as the 'root' user" >&2 || true
    $sudo test -d "$python_dir/boto3"
    $sudo chmod -R a+rX "$python_dir"
    echo "${python_clients[*]}" | $sudo tee "$stamp" >/dev/null
fi
