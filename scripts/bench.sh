#!/usr/bin/env bash
# The kmsd benchmark suite (see BENCHMARKS.md): builds kmsd and kmsd-bench, starts a
# software TPM (swtpm) on free loopback ports with its state in a temporary directory, runs
# kmsd-bench (which starts, measures and stops its own kmsd processes against that swtpm),
# and writes bench-results/results.json and bench-results/results.md.
#
#   scripts/bench.sh                 # full run, release build (several minutes), with the
#                                    # throughput section in each audit mode (fsync, write, off)
#   scripts/bench.sh --smoke         # a few seconds per section; checks the output (CI)
#   scripts/bench.sh -- --concurrency 1,64   # anything after -- goes to kmsd-bench
#
# Environment: BENCH_OUT (default bench-results), BENCH_PROFILE (release; smoke: debug,
# unless set), BENCH_KEEP_WORK=1 keeps the scratch directory (logs, state dirs),
# BENCH_KMSD=path measures another kmsd binary (e.g. an older build, for a before/after).
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=false
extra=()
while (($#)); do
    case "$1" in
        --smoke) smoke=true ;;
        --) shift; extra=("$@"); break ;;
        *) echo "usage: $0 [--smoke] [-- kmsd-bench options]" >&2; exit 2 ;;
    esac
    shift
done

scripts/install-deps.sh
export TSS2_LOG=all+NONE

# Smoke mode checks that the suite works, not speed: the debug build is already there in CI.
profile=${BENCH_PROFILE:-$($smoke && echo debug || echo release)}
if [[ $profile == release ]]; then
    cargo build --release --locked --bin kmsd --bin kmsd-bench --bin kmsctl -q
else
    cargo build --locked --bin kmsd --bin kmsd-bench --bin kmsctl -q
fi
bin_dir="${CARGO_TARGET_DIR:-target}/$profile"

out_dir=${BENCH_OUT:-bench-results}
work=$(mktemp -d "${TMPDIR:-/tmp}/kmsd-bench.XXXXXX")
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ ${BENCH_KEEP_WORK:-0} == 1 ]]; then
        echo "scratch directory kept: $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# systemd-creds --with-key=host needs the host credential secret; create it when missing
# (what `systemd-creds setup` does on any systemd host).
if command -v systemd-creds >/dev/null && [[ ! -e /var/lib/systemd/credential.secret ]]; then
    systemd-creds setup >/dev/null 2>&1 || echo "systemd-creds setup failed; its rows will say why" >&2
fi

# Two free consecutive loopback ports: swtpm serves on P, its control channel on P+1.
port_pair() {
    python3 - <<'EOF'
import socket
while True:
    a = socket.socket(); a.bind(("127.0.0.1", 0)); p = a.getsockname()[1]
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", p + 1))
    except OSError:
        a.close(); continue
    a.close(); b.close(); print(p); break
EOF
}
port=$(port_pair)
mkdir -p "$work/tpm"
swtpm socket --tpm2 --tpmstate "dir=$work/tpm" \
    --server "type=tcp,port=$port,bindaddr=127.0.0.1" \
    --ctrl "type=tcp,port=$((port + 1)),bindaddr=127.0.0.1" \
    --flags not-need-init,startup-clear >"$work/swtpm.log" 2>&1 &
pids+=($!)
deadline=$((SECONDS + 10))
until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if ((SECONDS > deadline)); then echo "swtpm did not start; see $work/swtpm.log" >&2; exit 1; fi
    sleep 0.05
done

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]]; then commit="$commit+dirty"; fi
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

args=(--tcti "swtpm:host=127.0.0.1,port=$port" --work-dir "$work/bench" --out-dir "$out_dir"
      --commit "$commit" --kmsd "${BENCH_KMSD:-$bin_dir/kmsd}" --kmsctl "$bin_dir/kmsctl")
$smoke && args+=(--smoke)
# The full run measures every audit mode, unless the options after -- choose.
if ! $smoke && [[ " ${extra[*]} " != *" --audit-modes"* && " ${extra[*]} " != *" --audit-off-too "* ]]; then
    args+=(--audit-modes fsync,write,off)
fi
"$bin_dir/kmsd-bench" "${args[@]}" "${extra[@]}" &
pids+=($!)
wait "${pids[-1]}"

# The JSON must parse and hold every section that was run.
python3 - "$out_dir/results.json" <<'EOF'
import json, os, sys
results = json.load(open(sys.argv[1]))
for section in ("meta", "disk", "throughput", "asymmetric", "library_ceilings", "startup", "create_key", "memory", "scrape", "alternatives", "fairness", "tcp", "connections", "caller_lookup", "files", "targets"):
    assert section in results, f"results.json lacks {section}"
sections = results["meta"]["sections"]
if "throughput" in sections:
    assert results["throughput"], "no throughput rows"
    assert all(r["requests"] > 0 for r in results["throughput"]), "a throughput run made no request"
    assert all(r["errors"] == 0 for r in results["throughput"]), "a throughput run had errors"
    echo = [r for r in results["throughput"] if r["config"] == "echo ceiling"]
    served = [r for r in results["throughput"] if r["config"] != "echo ceiling"]
    assert echo, "no echo ceiling rows"
    assert any(not r["operation"].startswith("Ping") for r in echo), "no POST row of the echo server"
    assert served, "no kmsd throughput rows"
    for r in served:
        row = f'{r["config"]} {r["operation"]} c={r["concurrency"]}'
        assert any(e["concurrency"] == r["concurrency"] for e in echo), f"{row}: no echo row at its concurrency"
        assert r["ratio_to_ceiling"] is not None, f"{row}: no ratio to the echo ceiling"
        assert r["kmsd_context_switches_per_request"] is not None, f"{row}: no context switches"
if "disk" in sections:
    disk = results["disk"]
    assert len(disk) == 3, f"disk rows missing: {disk}"
    plain, preallocated, zeros = disk
    assert plain["calls"] > 0 and not plain["note"], f"the disk append + fdatasync failed: {plain}"
    assert zeros["calls"] > 0 and not zeros["note"], f"the write over zeros + fdatasync failed: {zeros}"
    assert plain["p50_us"] > 0, f"no disk latency: {plain}"
    # A filesystem without fallocate says so in the note; anything else is a failure.
    assert (preallocated["calls"] > 0 and not preallocated["note"]) or preallocated["note"].startswith("fallocate"), \
        f"the preallocated disk run failed: {preallocated}"
    if "throughput" in sections:
        first = [r for r in results["throughput"] if r["config"] == "audit fsync" and r["concurrency"] == 1
                 and not r["operation"].startswith("Ping")]
        assert all(r["p50_minus_disk_p50_us"] is not None for r in first), "audited c=1 rows lack p50 minus disk p50"
if "asymmetric" in sections:
    assert results["asymmetric"], "no asymmetric rows"
    assert all(r["requests"] > 0 and r["errors"] == 0 for r in results["asymmetric"]), "an asymmetric run failed"
    assert len(results["library_ceilings"]) == 12, "library ceilings missing"
if "tcp" in sections:
    rows = results["tcp"] + results["connections"]
    assert {r["transport"] for r in results["tcp"]} == {"unix", "tcp"}, "tcp rows lack a transport"
    assert results["connections"], "no new-connection rows"
    assert all(r["requests"] > 0 and r["errors"] == 0 for r in rows), "a tcp run failed"
    lookups = results["caller_lookup"]
    assert lookups and all(c["calls"] > 0 for c in lookups), f"a caller lookup was not measured: {lookups}"
if "files" in sections:
    files = results["files"]
    assert files and files["rows"], "no file rows"
    assert all(r["ok"] for r in files["rows"]), f"a file run failed: {[r for r in files['rows'] if not r['ok']]}"
if "scale" in sections:
    assert len(results["startup"]) == 3, "start-up rows missing"
if "fairness" in sections and os.geteuid() == 0:
    assert len(results["fairness"]) == 4, "fairness rows missing"
    assert all(r["requests"] > 0 and r["errors"] == 0 for r in results["fairness"]), "a fairness run failed"
EOF
echo "results: $out_dir/results.json, $out_dir/results.md" >&2
