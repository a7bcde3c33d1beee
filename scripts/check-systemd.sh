#!/usr/bin/env bash
# Checks the systemd files in systemd/:
#   - `systemd-analyze verify` of kmsd.service and kmsd.socket prints nothing (it exits 0
#     even on unknown keys, so any output fails the check);
#   - `systemd-analyze security --offline=true` exposure <= 1.5 for the unit, alone and with
#     the metrics drop-in (systemd/metrics.conf);
#   - the sysusers.d and tmpfiles.d snippets apply cleanly to an empty root.
# verify needs the ExecStart/ExecReload binaries to exist, so it runs against a scratch
# root holding the host's system units, the kmsd units, and stub executables.
set -euo pipefail
cd "$(dirname "$0")/.."
MAX_EXPOSURE=${MAX_EXPOSURE:-1.5}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
fail=0

# 1. verify
root=$scratch/root
mkdir -p "$root/usr/bin" "$root/usr/lib/systemd"
ln -s usr/bin "$root/bin"
for exe in kmsd kill; do
    printf '#!/bin/sh\nexit 0\n' >"$root/usr/bin/$exe"
    chmod 0755 "$root/usr/bin/$exe"
done
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
cp systemd/kmsd.service systemd/kmsd.socket "$root/usr/lib/systemd/system/"
verify_out=$(systemd-analyze verify --root="$root" kmsd.service kmsd.socket 2>&1) || fail=1
if [[ -n $verify_out ]]; then
    echo "systemd-analyze verify reported:" >&2
    echo "$verify_out" >&2
    fail=1
else
    echo "verify: kmsd.service kmsd.socket clean"
fi

# 2. security score
check_exposure() {
    local label=$1 unit=$2 out score
    out=$(systemd-analyze security --offline=true --no-pager "$unit" 2>&1) || true
    score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$out")
    if [[ -z $score ]]; then
        echo "$label: no exposure score:" >&2
        echo "$out" >&2
        fail=1
    elif awk -v s="$score" -v max="$MAX_EXPOSURE" 'BEGIN { exit !(s > max) }'; then
        echo "$label: exposure $score > $MAX_EXPOSURE" >&2
        grep '✗' <<<"$out" >&2 || true
        fail=1
    else
        echo "$label: exposure $score (<= $MAX_EXPOSURE)"
    fi
}
check_exposure "kmsd.service" systemd/kmsd.service
mkdir -p "$scratch/metrics"
cat systemd/kmsd.service systemd/metrics.conf >"$scratch/metrics/kmsd.service"
check_exposure "kmsd.service + metrics.conf" "$scratch/metrics/kmsd.service"
mkdir -p "$scratch/tcp"
cat systemd/kmsd.service systemd/tcp-endpoint.conf >"$scratch/tcp/kmsd.service"
check_exposure "kmsd.service + tcp-endpoint.conf" "$scratch/tcp/kmsd.service"

# 3. sysusers.d and tmpfiles.d
snippets=$scratch/snippets
mkdir -p "$snippets/etc" "$snippets/usr/lib/sysusers.d" "$snippets/usr/lib/tmpfiles.d"
cp systemd/kmsd.sysusers "$snippets/usr/lib/sysusers.d/kmsd.conf"
cp systemd/kmsd.tmpfiles "$snippets/usr/lib/tmpfiles.d/kmsd.conf"
if ! out=$(systemd-sysusers --root="$snippets" 2>&1); then
    echo "systemd-sysusers failed: $out" >&2
    fail=1
elif ! grep -q '^kmsd:' "$snippets/etc/passwd" || ! grep -q '^kmsd-clients:' "$snippets/etc/group" \
    || ! grep -q '^tss:.*kmsd' "$snippets/etc/group"; then
    echo "sysusers did not create kmsd, kmsd-clients and tss membership" >&2
    fail=1
else
    echo "sysusers: kmsd, kmsd-clients, tss membership"
fi
if ! out=$(systemd-tmpfiles --root="$snippets" --create 2>&1) || [[ -n $out ]] \
    || [[ $(stat -c %a "$snippets/var/lib/kmsd") != 700 ]]; then
    echo "systemd-tmpfiles failed or state dir not 0700: $out" >&2
    fail=1
else
    echo "tmpfiles: /var/lib/kmsd 0700, /run/kmsd"
fi
exit $fail
