#!/usr/bin/env bash
# Development quick start: installs what is missing, builds kmsd, starts a software TPM
# (swtpm) and kmsd against it, runs a short demo with kmsctl, then keeps serving until
# Ctrl-C. State lives in $KMSD_DEV_DIR (default ./.dev): the swtpm state and kmsd's state
# dir belong together — delete both or neither.
#
#   swtpm/kmsd-dev.sh                 # demo, then serve until Ctrl-C
#   swtpm/kmsd-dev.sh --demo-only     # demo, then stop everything
#   KMSD_SWTPM_PORT=2321              # swtpm server port (control channel: port + 1)
#   KMSD_DEV_TCP_PORT=8091            # the loopback TCP endpoint for AWS SDKs
set -euo pipefail
cd "$(dirname "$0")/.."

demo_only=false
[[ "${1:-}" == "--demo-only" ]] && demo_only=true

scripts/install-deps.sh
echo "==> building kmsd and kmsctl (release)"
cargo build --release --locked --bins -q

dev_dir=$(realpath -m "${KMSD_DEV_DIR:-.dev}")
port=${KMSD_SWTPM_PORT:-2321}
tcp_port=${KMSD_DEV_TCP_PORT:-8091}
mkdir -p "$dev_dir/tpm"
chmod 700 "$dev_dir"
socket="$dev_dir/kmsd.sock"
export KMSD_SOCKET="$socket"
export TSS2_LOG=all+NONE
kmsd=target/release/kmsd
kmsctl=target/release/kmsctl

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_until() { # wait_until SECONDS DESCRIPTION COMMAND...
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" 2>/dev/null; do
        if ((SECONDS > deadline)); then echo "timed out waiting for $what" >&2; exit 1; fi
        sleep 0.05
    done
}

echo "==> starting swtpm on 127.0.0.1:$port (state in $dev_dir/tpm)"
swtpm socket --tpm2 --tpmstate "dir=$dev_dir/tpm" \
    --server "type=tcp,port=$port,bindaddr=127.0.0.1" \
    --ctrl "type=tcp,port=$((port + 1)),bindaddr=127.0.0.1" \
    --flags not-need-init,startup-clear &
pids+=($!)
wait_until 10 swtpm bash -c "exec 3<>/dev/tcp/127.0.0.1/$port"

# A development config: you (the user running this script) administer this kmsd.
cat >"$dev_dir/kmsd.toml" <<TOML
# Written by swtpm/kmsd-dev.sh for development; see packaging/kmsd.toml for every setting.
socket_mode = "0600"
listen_tcp = "127.0.0.1:$tcp_port"
[access]
admin_users = ["$(id -u)"]
[tpm]
tcti = "swtpm:host=127.0.0.1,port=$port"
TOML

echo "==> starting kmsd (socket $socket, state dir $dev_dir/state, config $dev_dir/kmsd.toml)"
"$kmsd" --config "$dev_dir/kmsd.toml" --state-dir "$dev_dir/state" --socket "$socket" &
pids+=($!)
kmsd_pid=$!
wait_until 30 kmsd test -S "$socket" -a -d "/proc/$kmsd_pid"
wait_until 30 kmsd "$kmsctl" list-keys --limit 1 >/dev/null

run() { echo "\$ $*" >&2; "$@"; }
echo "==> demo"
key_id=$(run "$kmsctl" create-key --description "quick start demo" --query KeyMetadata.KeyId --output text)
echo "$key_id"
alias="alias/demo-$(date +%s)"
run "$kmsctl" create-alias --alias-name "$alias" --target-key-id "$key_id"
printf 'hello from kmsd' >"$dev_dir/secret.txt"
run "$kmsctl" encrypt --key-id "$alias" --plaintext "fileb://$dev_dir/secret.txt" \
    --encryption-context purpose=demo --query CiphertextBlob --output text |
    base64 -d >"$dev_dir/secret.enc"
echo "ciphertext: $(wc -c <"$dev_dir/secret.enc") bytes in $dev_dir/secret.enc"
run "$kmsctl" decrypt --ciphertext-blob "fileb://$dev_dir/secret.enc" \
    --encryption-context purpose=demo --query Plaintext --output text | base64 -d
echo
run "$kmsctl" generate-data-key --key-id "$alias" --key-spec AES_256 --output json |
    sed -E 's/("Plaintext": ")[^"]+/\1<32-byte data key, base64>/'

echo "==> the same key from boto3, unchanged, over the loopback TCP endpoint"
export AWS_ENDPOINT_URL_KMS="http://127.0.0.1:$tcp_port" AWS_ACCESS_KEY_ID=kmsd AWS_SECRET_ACCESS_KEY=kmsd AWS_DEFAULT_REGION=local
PYTHONPATH=/opt/kmsd-test-python /usr/bin/python3 - "$alias" <<'PY'
import sys, boto3
kms = boto3.client("kms")
blob = kms.encrypt(KeyId=sys.argv[1], Plaintext=b"hello from boto3")["CiphertextBlob"]
print("boto3 round trip:", kms.decrypt(CiphertextBlob=blob)["Plaintext"].decode())
PY

if $demo_only; then
    echo "==> demo done; stopping"
    exit 0
fi
echo
echo "kmsd is running. In another shell:"
echo "  export KMSD_SOCKET=$socket"
echo "  $PWD/$kmsctl list-keys"
echo "or, from any AWS SDK or the aws CLI:"
echo "  export AWS_ENDPOINT_URL_KMS=http://127.0.0.1:$tcp_port AWS_ACCESS_KEY_ID=kmsd AWS_SECRET_ACCESS_KEY=kmsd AWS_DEFAULT_REGION=local"
echo "Ctrl-C stops kmsd and swtpm."
wait "$kmsd_pid"
