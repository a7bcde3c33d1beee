#!/usr/bin/env bash
# Tests kmsd's package and units under a real systemd (252, PID 1 of a systemd-nspawn
# container booted from a Debian 12 debootstrap root), following
# /work/shared/notes/real-systemd.md:
#   - installs kmsd the way the README says: apt-get install ./kmsd_*.deb (bound in);
#   - runs a software TPM as the unit swtpm-kmsd.service, in kmsd's network namespace
#     (test-only drop-in for kmsd: Requires/After/JoinsNamespaceOf, AF_INET, localhost);
#   - checks, with one PASS/FAIL line each: socket activation; the sandbox of the running
#     process (NoNewPrivs, seccomp, no capabilities, read-only mounts) and of probe units
#     with the same sandbox; a kmsctl round trip as a client unit; reload with a good and
#     a bad config; stop and re-activation; a kmsd that cannot reach its TPM ends `failed`
#     (start limit) with its reason in `systemctl status`, and kmsctl times out instead of
#     hanging; the TCP endpoint under the tcp-endpoint.conf drop-in proves root and
#     another uid apart; removing the package stops and disables the units and keeps
#     /var/lib/kmsd.
# Exits non-zero if any check fails. The container is powered off and its files and
# cgroups removed on every exit (trap).
#
#   scripts/check-real-systemd.sh [path/to/kmsd_*.deb]   (default: target/debian/kmsd_*.deb,
#                                                         built by scripts/build-deb.sh)
# Needs root with CAP_SYS_ADMIN. The debootstrap root is cached in $KMSD_CI_ROOT
# (default /var/cache/kmsd-ci-root; delete it to rebuild); each run boots a copy.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

ROOT_CACHE=${KMSD_CI_ROOT:-/var/cache/kmsd-ci-root}
MACHINE=kmsd-ci
SWTPM_PORT=2321
DEAD_PORT=2399
TCP_PORT=28091
# The libtss2 runtime libraries kmsd links (ldd target/release/kmsd; dpkg -S) and the
# TCTI modules libtss2-tctildr loads at run time (swtpm, device).
INCLUDE=systemd,dbus,swtpm,swtpm-tools,libtss2-esys-3.0.2-0,libtss2-mu0,libtss2-rc0,libtss2-sys1,libtss2-tctildr0,libtss2-tcti-swtpm0,libtss2-tcti-device0,libssl3,procps

deb=${1:-}
if [[ -z $deb ]]; then
    debs=(target/debian/kmsd_*.deb)
    deb=${debs[-1]}
fi
[[ -f $deb ]] || { echo "check-real-systemd: no package at '$deb' (run scripts/build-deb.sh)" >&2; exit 1; }
deb=$(realpath "$deb")

failures=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
info() { echo "info: $*"; }

# Polls `"$@"` every 0.2 s until it succeeds or $1 seconds pass.
wait_until() {
    local limit=$1
    shift
    local deadline=$((SECONDS + limit))
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# One run at a time: nspawn's leftover cgroups have fixed names.
exec 9>/run/lock/kmsd-check-real-systemd.lock
flock -w 600 9

# 1. Host packages.
missing=()
for package in systemd-container debootstrap bpftool; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if ((${#missing[@]})); then
    info "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. The root, cached.
stamp="bookworm minbase $INCLUDE"
if [[ ! -f $ROOT_CACHE/.kmsd-ci-root ]] || [[ $(<"$ROOT_CACHE/.kmsd-ci-root") != "$stamp" ]]; then
    mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)\/\?$/\1/p' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
    if [[ -z $mirror ]] && [[ -f /etc/apt/sources.list ]]; then
        mirror=$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ { print $2; exit }' /etc/apt/sources.list)
    fi
    mirror=${mirror:-http://deb.debian.org/debian}
    info "debootstrap bookworm from $mirror into $ROOT_CACHE (about a minute)"
    rm -rf "$ROOT_CACHE.tmp" "$ROOT_CACHE"
    debootstrap --variant=minbase --include="$INCLUDE" bookworm "$ROOT_CACHE.tmp" "$mirror" \
        >/tmp/kmsd-ci-debootstrap.log 2>&1 \
        || { tail -20 /tmp/kmsd-ci-debootstrap.log >&2; exit 1; }
    echo "$stamp" >"$ROOT_CACHE.tmp/.kmsd-ci-root"
    mv "$ROOT_CACHE.tmp" "$ROOT_CACHE"
fi

work=$(mktemp -d /var/tmp/kmsd-ci.XXXXXX)
root=$work/root
nspawn_pid=""
leader=""
# nspawn leaves empty payload/ and supervisor/ cgroups under the caller's cgroup, in the
# cgroup2 hierarchy and in the v1 name=systemd one (hybrid layout).
leftover_parents=()
cgroup2_parent=""
if mount=$(findmnt -n -t cgroup2 -o TARGET | head -1) && [[ -n $mount ]]; then
    cgroup2_parent=$mount$(sed -n 's/^0:://p' /proc/self/cgroup)
    leftover_parents+=("$cgroup2_parent")
fi
if mount=$(findmnt -n -t cgroup -o TARGET,OPTIONS | awk '$2 ~ /name=systemd/ { print $1; exit }') \
    && [[ -n $mount ]]; then
    leftover_parents+=("$mount$(sed -n 's/^[0-9]*:name=systemd://p' /proc/self/cgroup)")
fi

in_ct() { timeout 120 nsenter -t "$leader" -a -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@" </dev/null; }
ctl() { in_ct systemctl "$@"; }

cleanup() {
    local status=$?
    set +e
    if [[ -n $nspawn_pid ]] && kill -0 "$nspawn_pid" 2>/dev/null; then
        # poweroff from inside; else SIGTERM, which nspawn turns into a halt of the container.
        if ! { [[ -n $leader ]] \
            && timeout 20 nsenter -t "$leader" -a -- systemctl poweroff --no-block >/dev/null 2>&1 \
            && wait_until 60 eval '! kill -0 "$nspawn_pid" 2>/dev/null'; }; then
            echo "check-real-systemd: container did not power off; terminating nspawn" >&2
            kill -TERM "$nspawn_pid" 2>/dev/null
            wait_until 30 eval '! kill -0 "$nspawn_pid" 2>/dev/null' || kill -KILL "$nspawn_pid"
        fi
        wait "$nspawn_pid" 2>/dev/null
    fi
    for parent in "${leftover_parents[@]}"; do
        for leftover in payload supervisor; do
            dir=${parent%/}/$leftover
            [[ -d $dir ]] && find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null
        done
    done
    if ((status != 0)) && [[ -f $work/nspawn.log ]]; then
        cp "$work/nspawn.log" /tmp/kmsd-check-real-systemd.console.log
        echo "--- last lines of the container console (all: /tmp/kmsd-check-real-systemd.console.log) ---" >&2
        tail -30 "$work/nspawn.log" >&2
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 3. This run's copy of the root, with the package and the test-only units.
info "copying the root"
cp -a "$ROOT_CACHE" "$root"
mkdir -p "$work/deb"
cp "$deb" "$work/deb/"
echo "$MACHINE" >"$root/etc/hostname"

cat >"$root/etc/systemd/system/swtpm-kmsd.service" <<EOF
# Test only: a software TPM on 127.0.0.1:$SWTPM_PORT inside kmsd's network namespace.
[Unit]
Description=software TPM for kmsd (check-real-systemd.sh)
[Service]
StateDirectory=swtpm-kmsd
ExecStart=/usr/bin/swtpm socket --tpm2 --tpmstate dir=/var/lib/swtpm-kmsd \\
    --server type=tcp,port=$SWTPM_PORT,bindaddr=127.0.0.1 \\
    --ctrl type=tcp,port=$((SWTPM_PORT + 1)),bindaddr=127.0.0.1 --flags not-need-init,startup-clear
# Started means listening: poll the control port, with a deadline of 10 s.
ExecStartPost=/bin/bash -c 'for i in {1..200}; do (: </dev/tcp/127.0.0.1/$((SWTPM_PORT + 1))) 2>/dev/null && exit 0; sleep 0.05; done; exit 1'
PrivateNetwork=yes
# Without it, JoinsNamespaceOf= takes kmsd's private /tmp away.
PrivateTmp=yes
JoinsNamespaceOf=kmsd.service
EOF
mkdir -p "$root/etc/systemd/system/kmsd.service.d"
cat >"$root/etc/systemd/system/kmsd.service.d/50-ci-swtpm.conf" <<'EOF'
# Test only: reach swtpm-kmsd.service on 127.0.0.1 in the shared network namespace.
[Unit]
Requires=swtpm-kmsd.service
After=swtpm-kmsd.service
JoinsNamespaceOf=swtpm-kmsd.service
[Service]
RestrictAddressFamilies=AF_UNIX AF_INET
IPAddressAllow=localhost
EOF

# Probe units: kmsd.service's [Service] sandbox with a shell script instead of kmsd, once
# as user kmsd (exactly kmsd's sandbox) and once as root (only the mounts can refuse).
cat >"$root/usr/local/bin/kmsd-probe" <<'EOF'
#!/bin/sh
for dir in / /etc /etc/kmsd /usr /var /var/lib /var/lib/kmsd /run /run/lock /run/kmsd /dev/shm /tmp /var/tmp /root /home; do
    if touch "$dir/.kmsd-probe" 2>/dev/null; then
        rm -f "$dir/.kmsd-probe"
        echo "writable $dir"
    fi
done
EOF
chmod 0755 "$root/usr/local/bin/kmsd-probe"
# The output file is opened by systemd, outside the sandbox.
probe_service() {
    sed -n '/^\[Service\]/,/^\[Install\]/p' systemd/kmsd.service | sed '/^\[Install\]/d' \
        | grep -Ev '^(Type|NotifyAccess|ExecStart|ExecReload|Restart|RestartSec|TimeoutStartSec|TimeoutStopSec|WatchdogSec)='
    echo "Type=oneshot"
    echo "ExecStart=/usr/local/bin/kmsd-probe"
    echo "StandardOutput=truncate:/run/$1.out"
}
{ echo "[Unit]"; echo "Description=kmsd sandbox probe (user kmsd)"; probe_service kmsd-probe; } \
    >"$root/etc/systemd/system/kmsd-probe.service"
# As root, StateDirectory= and RuntimeDirectory= would chown kmsd's directories to root:
# the same mounts come from ReadWritePaths= instead.
{ echo "[Unit]"; echo "Description=kmsd sandbox probe (root)"; probe_service kmsd-probe-root \
    | sed 's/^User=kmsd$/User=root/; s/^Group=kmsd$/Group=root/' \
    | sed 's/^StateDirectory=kmsd$/ReadWritePaths=\/var\/lib\/kmsd \/run\/kmsd/' \
    | grep -Ev '^(StateDirectory|RuntimeDirectory)[A-Za-z]*='; } \
    >"$root/etc/systemd/system/kmsd-probe-root.service"

# 4. Boot.
info "booting $MACHINE"
SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn -D "$root" -M "$MACHINE" --boot \
    --register=no --keep-unit --private-network --capability=CAP_BPF,CAP_NET_ADMIN \
    --system-call-filter=bpf --bind-ro="$work/deb:/kmsd-deb" --console=read-only \
    </dev/null >"$work/nspawn.log" 2>&1 &
nspawn_pid=$!
# The container's PID 1: a child of nspawn running systemd in its own PID namespace (a
# short-lived nspawn helper comes first), that nsenter can enter.
find_leader() {
    local pid
    for pid in $(ps -o pid= --ppid "$nspawn_pid"); do
        if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == systemd ]] \
            && [[ $(readlink "/proc/$pid/ns/pid") != $(readlink /proc/self/ns/pid) ]] \
            && timeout 10 nsenter -t "$pid" -a -- true 2>/dev/null; then
            leader=$pid
            return 0
        fi
    done
    return 1
}
# Booted: the leader answers is-system-running with running (or degraded). Early in boot
# systemctl cannot connect yet and prints nothing: poll.
state=""
booted() {
    find_leader || return 1
    state=$(timeout 10 nsenter -t "$leader" -a -- systemctl is-system-running 2>/dev/null) || true
    [[ $state == running || $state == degraded ]]
}
wait_until 120 booted || true
case $state in
    running) pass "systemd booted as PID 1 of the container ($(in_ct systemctl --version | head -1))" ;;
    degraded)
        info "failed units: $(ctl --failed --plain --no-legend | tr '\n' ' ')"
        pass "systemd booted (degraded: failed units above are not kmsd's)"
        ;;
    *) fail "systemd did not boot within 120 s: state '$state', leader '${leader:-none}'"; exit 1 ;;
esac

# 5. Install as the README says.
if out=$(in_ct sh -c 'cd /kmsd-deb && DEBIAN_FRONTEND=noninteractive apt-get install -y ./kmsd_*.deb' 2>&1); then
    pass "apt-get install ./$(basename "$deb")"
else
    fail "apt-get install ./$(basename "$deb"): $(tail -5 <<<"$out")"
    exit 1
fi
if in_ct id kmsd >/dev/null && [[ $(in_ct stat -c '%U %a' /var/lib/kmsd) == "kmsd 700" ]] \
    && [[ $(ctl is-enabled kmsd.socket || true) == disabled ]] \
    && [[ $(ctl is-active kmsd.socket kmsd.service | sort -u) == inactive ]]; then
    pass "postinst: user kmsd, /var/lib/kmsd 0700 kmsd; nothing enabled or started"
else
    fail "postinst: user, state dir or unit state not as documented"
fi

config=$root/etc/kmsd/kmsd.toml
set_config() { sed -i "s|^$1 = .*|$1 = $2|" "$config"; }
set_config tcti "\"swtpm:host=127.0.0.1,port=$SWTPM_PORT\""
ctl daemon-reload

kmsctl() { in_ct systemd-run --wait --pipe --quiet --collect -- /usr/bin/kmsctl "$@"; }
main_pid() { ctl show -p MainPID --value kmsd.service; }
is_active() { [[ $(ctl is-active "$1" || true) == "$2" ]]; }

# a. Socket activation.
ctl enable --now kmsd.socket >/dev/null 2>&1
if is_active kmsd.socket active && is_active kmsd.service inactive; then
    pass "a. kmsd.socket active, kmsd.service inactive before the first request"
else
    fail "a. after enable --now kmsd.socket: socket $(ctl is-active kmsd.socket), service $(ctl is-active kmsd.service)"
fi
if out=$(kmsctl list-keys 2>&1) && is_active kmsd.service active; then
    pass "a. the first request started kmsd.service (MainPID $(main_pid))"
else
    fail "a. first request: $out; service $(ctl is-active kmsd.service)"
    ctl status --no-pager kmsd.service swtpm-kmsd.service || true
fi

# b. The sandbox of the running process.
pid=$(main_pid)
status=$(in_ct cat "/proc/$pid/status")
field() { awk -v f="$1:" '$1 == f { print $2 }' <<<"$status"; }
if [[ $(field NoNewPrivs) == 1 && $(field Seccomp) == 2 && $(field CapEff) == 0000000000000000 \
    && $(field CapBnd) == 0000000000000000 ]]; then
    pass "b. /proc/$pid/status: NoNewPrivs 1, Seccomp 2, CapEff 0, CapBnd 0"
else
    fail "b. /proc/$pid/status: NoNewPrivs $(field NoNewPrivs), Seccomp $(field Seccomp), CapEff $(field CapEff), CapBnd $(field CapBnd)"
fi
# LimitNOFILE=65536, or the container's hard limit when that is lower (systemd then sets
# the closest value it can: the CI machine gives the container no CAP_SYS_RESOURCE).
ceiling=$(in_ct cat /proc/1/limits | awk '/^Max open files/ { print $5 }')
want=$((ceiling < 65536 ? ceiling : 65536))
nofile=$(in_ct cat "/proc/$pid/limits" | awk '/^Max open files/ { print $4, $5 }')
if [[ $nofile == "$want $want" ]]; then
    pass "b. /proc/$pid/limits: open files $nofile (LimitNOFILE=65536; the container's hard limit is $ceiling)"
else
    fail "b. /proc/$pid/limits: open files '$nofile', want '$want $want'"
fi
mountinfo=$(in_ct cat "/proc/$pid/mountinfo")
# The options (ro/rw) of the mount that covers $1: the last mount at the longest prefix.
mount_of() {
    awk -v path="$1" '{
        mp = $5; gsub(/\\040/, " ", mp)
        if (path == mp || mp == "/" || index(path, mp "/") == 1) {
            if (length(mp) >= best) { best = length(mp); split($6, o, ","); opt = o[1]; at = mp }
        }
    } END { print opt, at }' <<<"$mountinfo"
}
check_mount() {
    local path=$1 want=$2 got
    got=$(mount_of "$path")
    if [[ ${got%% *} == "$want" ]]; then
        pass "b. mountinfo: $path is $want (mount at ${got#* })"
    else
        fail "b. mountinfo: $path is '${got%% *}' (mount at ${got#* }), want $want"
    fi
}
check_mount / ro
check_mount /usr ro
check_mount /etc ro
check_mount /etc/kmsd ro
check_mount /var/lib/kmsd rw
check_mount /run ro
check_mount /run/lock ro
check_mount /dev/shm ro
if grep -q ' /proc .*subset=pid' <<<"$mountinfo"; then
    pass "b. mountinfo: /proc mounted with subset=pid"
else
    fail "b. mountinfo: /proc without subset=pid"
fi
if [[ $(in_ct stat -c %a "/proc/$pid/root/run/lock") == 0 && $(in_ct stat -c %a "/proc/$pid/root/dev/shm") == 0 ]]; then
    pass "b. /run/lock and /dev/shm are inaccessible (mode 000) for kmsd"
else
    fail "b. /run/lock or /dev/shm still accessible for kmsd"
fi
# DevicePolicy= and IPAddressDeny= are BPF programs on the unit's cgroup (systemd drops
# them silently when bpf() is refused). The container's cgroup tree is nspawn's payload/.
unit_cgroup=${cgroup2_parent%/}/payload/system.slice/kmsd.service
programs=$(bpftool cgroup show "$unit_cgroup" 2>&1 || true)
if grep -q 'cgroup_device' <<<"$programs" && grep -q 'ingress' <<<"$programs" \
    && grep -q 'egress' <<<"$programs"; then
    pass "b. bpftool: device filter and IP ingress/egress filters attached to kmsd.service's cgroup"
else
    fail "b. bpftool cgroup show $unit_cgroup: $programs"
fi
# Private /tmp and /var/tmp, and kmsd's own directories, are the only writable places.
check_probe() {
    local unit=$1 want=$2 got
    ctl start "$unit" || true
    got=$(in_ct cat "/run/${unit%.service}.out" | sed -n 's/^writable //p' | sort -u | tr '\n' ' ')
    if [[ $got == "$want" ]]; then
        pass "b. $unit (kmsd's sandbox) can write only to: $got"
    else
        fail "b. $unit can write to: '$got', want '$want'"
    fi
}
check_probe kmsd-probe.service "/run/kmsd /tmp /var/lib/kmsd /var/tmp "
# Root without capabilities writes wherever root owns the directory, unless the mount is
# read-only: only the private /tmp and /var/tmp are left (kmsd's directories are kmsd's).
check_probe kmsd-probe-root.service "/tmp /var/tmp "

# c. A round trip, kmsctl as a client unit (root).
key=$(kmsctl create-key --description check-real-systemd --query KeyMetadata.KeyId --output text 2>&1) || true
plaintext=$(printf 'real systemd round trip' | base64)
blob=$(kmsctl encrypt --key-id "$key" --plaintext "$plaintext" --query CiphertextBlob --output text 2>&1) || true
back=$(kmsctl decrypt --ciphertext-blob "$blob" --query Plaintext --output text 2>&1) || true
if [[ $back == "$plaintext" ]]; then
    pass "c. kmsctl create-key / encrypt / decrypt round trip (key $key)"
else
    fail "c. round trip: key '$key', blob '${blob:0:80}', decrypted '$back'"
fi

# d. Reload, good then bad.
pid=$(main_pid)
since=$(in_ct date '+%Y-%m-%d %H:%M:%S')
set_config log_level '"debug"'
ctl reload kmsd.service
kmsctl describe-key --key-id alias/check-real-systemd-missing >/dev/null 2>&1 || true
journal_has() { in_ct journalctl -q -o cat -u kmsd.service --since "$since" --no-pager | grep -q "$1"; }
if wait_until 10 journal_has 'configuration reloaded.*log_level' && wait_until 10 journal_has 'DEBUG' \
    && [[ $(main_pid) == "$pid" ]]; then
    pass "d. reload with log_level = debug: applied, debug lines logged, same process"
else
    fail "d. good reload: $(in_ct journalctl -q -o cat -u kmsd.service --since "$since" --no-pager | tail -5)"
fi
echo 'this is not toml = = =' >>"$config"
ctl reload kmsd.service || true
status_text() { ctl show -p StatusText --value kmsd.service; }
if wait_until 10 eval '[[ $(status_text) == *"reload failed"* ]]' && is_active kmsd.service active \
    && [[ $(main_pid) == "$pid" ]] && kmsctl list-keys >/dev/null 2>&1; then
    pass "d. reload with a bad config: still serving, status '$(status_text | cut -c1-90)...'"
else
    fail "d. bad reload: active $(ctl is-active kmsd.service), status '$(status_text)'"
fi
sed -i '$d' "$config"
set_config log_level '"info"'
ctl reload kmsd.service
wait_until 10 eval '[[ $(status_text) != *"reload failed"* ]]' || fail "d. reload after fixing the config"

# e. Stop, then started again by the socket.
ctl stop kmsd.service 2>/dev/null
if is_active kmsd.service inactive && is_active kmsd.socket active; then
    pass "e. stop: kmsd.service inactive, kmsd.socket still listening"
else
    fail "e. stop: service $(ctl is-active kmsd.service), socket $(ctl is-active kmsd.socket)"
fi
if out=$(kmsctl describe-key --key-id "$key" --query KeyMetadata.KeyId --output text 2>&1) \
    && [[ $out == "$key" ]] && is_active kmsd.service active && [[ $(main_pid) != "$pid" ]]; then
    pass "e. the next request started kmsd again (MainPID $(main_pid)) and found the key"
else
    fail "e. re-activation: '$out', service $(ctl is-active kmsd.service)"
fi

# g. The TCP endpoint with the packaged tcp-endpoint.conf drop-in, as the README says: kmsd
# leaves its private network namespace, so the test's swtpm does too (same loopback).
sed -i -e '/^PrivateNetwork=yes$/d' -e '/^JoinsNamespaceOf=/d' "$root/etc/systemd/system/swtpm-kmsd.service"
sed -i '/^JoinsNamespaceOf=/d' "$root/etc/systemd/system/kmsd.service.d/50-ci-swtpm.conf"
in_ct install -D -m 0644 /usr/share/doc/kmsd/examples/tcp-endpoint.conf \
    /etc/systemd/system/kmsd.service.d/tcp-endpoint.conf
echo "listen_tcp = \"127.0.0.1:$TCP_PORT\"" | cat - "$config" >"$config.new" && mv "$config.new" "$config"
ctl daemon-reload
ctl stop kmsd.service swtpm-kmsd.service 2>/dev/null || true
ctl start kmsd.service 2>/dev/null || true
# One ListKeys over TCP (bash's /dev/tcp: the container has no curl), as uid $1.
tcp_list_keys() {
    in_ct systemd-run --wait --pipe --quiet --collect --uid="$1" -- /bin/bash -c "
        exec 3<>/dev/tcp/127.0.0.1/$TCP_PORT || exit 1
        printf 'POST / HTTP/1.1\\r\\nHost: 127.0.0.1:$TCP_PORT\\r\\nX-Amz-Target: TrentService.ListKeys\\r\\nContent-Type: application/x-amz-json-1.1\\r\\nX-Amz-Date: 20261201T000000Z\\r\\nAuthorization: AWS4-HMAC-SHA256 Credential=kmsd/20261201/local/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0000000000000000000000000000000000000000000000000000000000000000\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\n{}' >&3
        timeout 10 cat <&3"
}
if wait_until 20 eval 'tcp_list_keys 0 2>/dev/null | grep -q "$key"'; then
    pass "g. tcp-endpoint.conf: ListKeys over loopback TCP as root (proven by inet_diag as user kmsd) lists the key"
else
    fail "g. TCP endpoint as root: $(tcp_list_keys 0 2>&1 | head -3); $(in_ct journalctl -q -o cat -u kmsd.service --no-pager | tail -3)"
fi
out=$(tcp_list_keys 65534 2>&1) || true
if [[ $out == *"403 Forbidden"* || $out == *"AccessDeniedException"* ]] && [[ $out == *"uid 65534"* ]]; then
    pass "g. the same request as uid 65534 is that uid's: $(grep -o 'uid 65534[^"]*' <<<"$out" | head -1 | cut -c1-80)"
else
    fail "g. TCP endpoint as uid 65534: $(head -c 300 <<<"$out")"
fi

# f. No TPM: the start limit ends the restart loop, kmsctl does not hang.
ctl stop kmsd.service 2>/dev/null
set_config tcti "\"swtpm:host=127.0.0.1,port=$DEAD_PORT\""
started=$SECONDS
out=$(kmsctl --cli-connect-timeout 3 --cli-read-timeout 3 list-keys 2>&1) && rc=0 || rc=$?
if ((rc != 0)) && ((SECONDS - started < 30)) && [[ $out == *"timed out after 3 s"* ]]; then
    pass "f. kmsctl --cli-read-timeout 3 against a kmsd that cannot start: exit $rc after $((SECONDS - started)) s: $(head -1 <<<"$out" | cut -c1-110)"
else
    fail "f. kmsctl while kmsd cannot start: exit $rc after $((SECONDS - started)) s: $out"
fi
if wait_until 120 eval '[[ $(ctl is-failed kmsd.service || true) == failed ]]'; then
    restarts=$(ctl show -p NRestarts --value kmsd.service)
    report=$(ctl status --no-pager kmsd.service 2>&1 || true)
    reason=$(sed -n 's/^ *Status: //p' <<<"$report")
    if grep -q 'Start request repeated too quickly' <<<"$report" \
        && [[ $reason == *"cannot connect to the TPM"* ]]; then
        pass "f. kmsd.service failed after $((SECONDS - started)) s (start limit, NRestarts=$restarts); systemctl status shows Status: $reason"
    else
        fail "f. kmsd.service failed without the start limit or the reason in systemctl status: $report"
    fi
else
    fail "f. kmsd.service never reached failed: $(ctl show -p ActiveState -p SubState -p NRestarts kmsd.service | tr '\n' ' ')"
fi
started=$SECONDS
out=$(kmsctl --cli-connect-timeout 3 --cli-read-timeout 3 list-keys 2>&1) && rc=0 || rc=$?
if ((rc != 0)) && ((SECONDS - started < 30)); then
    pass "f. kmsctl after the start limit: exit $rc after $((SECONDS - started)) s: $(head -1 <<<"$out" | cut -c1-110)"
else
    fail "f. kmsctl after the start limit: exit $rc after $((SECONDS - started)) s"
fi
# Re-armed as the unit's comment says, kmsd serves again.
set_config tcti "\"swtpm:host=127.0.0.1,port=$SWTPM_PORT\""
ctl reset-failed kmsd.service kmsd.socket
ctl start kmsd.socket
if out=$(kmsctl describe-key --key-id "$key" --query KeyMetadata.KeyId --output text 2>&1) && [[ $out == "$key" ]]; then
    pass "f. after reset-failed and start kmsd.socket, kmsd serves again"
else
    fail "f. after reset-failed: '$out'"
fi

# Removing the package stops and disables the units and keeps the keys.
if in_ct env DEBIAN_FRONTEND=noninteractive apt-get remove -y kmsd >/dev/null 2>&1 \
    && is_active kmsd.socket inactive && is_active kmsd.service inactive \
    && [[ ! -e $root/etc/systemd/system/sockets.target.wants/kmsd.socket ]] \
    && [[ -n $(in_ct ls -A /var/lib/kmsd) ]]; then
    pass "apt-get remove kmsd: units stopped and disabled, /var/lib/kmsd kept"
else
    fail "apt-get remove kmsd: socket $(ctl is-active kmsd.socket || true), service $(ctl is-active kmsd.service || true)"
fi

# Power off (the trap waits for nspawn and removes the cgroups and the copy).
ctl poweroff --no-block >/dev/null 2>&1 || true
if wait_until 60 eval '! kill -0 "$nspawn_pid" 2>/dev/null'; then
    wait "$nspawn_pid" || true
    nspawn_pid=""
    pass "container powered off"
else
    fail "container did not power off within 60 s"
fi

if ((failures)); then
    echo "check-real-systemd: $failures check(s) failed"
    exit 1
fi
echo "check-real-systemd: all checks passed"
