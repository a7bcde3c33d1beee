#!/usr/bin/env bash
# The fuzz targets of fuzz/ (cargo-fuzz, libFuzzer; see docs/fuzzing.md): installs
# cargo-fuzz if it is missing, builds every target (release, debug assertions on,
# AddressSanitizer), then runs each one in turn, one process at a time, and fails as soon
# as one finds a crash (the input is kept under fuzz/artifacts/<target>/).
#
#   scripts/fuzz.sh                      # every target for 60 s (what CI runs)
#   scripts/fuzz.sh --smoke 10           # every target for 10 s
#   scripts/fuzz.sh --runs 10000000      # every target for 10 million executions
#   scripts/fuzz.sh --smoke 30 ciphertext key_policy   # only these targets
#
# New interesting inputs go to fuzz/corpus/<target>/ (not in git); fuzz/seeds/<target>/ is
# the seed corpus in git and is only read. Logs: fuzz/artifacts/logs/<target>.log.
# Stable Rust needs RUSTC_BOOTSTRAP=1 for cargo-fuzz's -Zsanitizer flags; the script sets it.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60
runs=""
targets=()
while (($#)); do
    case "$1" in
        --smoke)
            seconds="${2:?--smoke needs a number of seconds}"
            shift
            ;;
        --runs)
            runs="${2:?--runs needs a number of executions}"
            shift
            ;;
        -h | --help)
            sed -n '2,14p' "$0"
            exit 0
            ;;
        -*)
            echo "fuzz.sh: unknown option $1" >&2
            exit 2
            ;;
        *) targets+=("$1") ;;
    esac
    shift
done

export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

if ((${#targets[@]} == 0)); then
    mapfile -t targets < <(cargo fuzz list)
fi

# The audit target writes its files under TMPDIR: one scratch directory, removed at exit,
# in memory where there is a tmpfs (several times faster than a busy disk).
if [[ -d /dev/shm && -w /dev/shm ]]; then
    scratch="$(mktemp -d -p /dev/shm kmsd-fuzz.XXXXXX)"
else
    scratch="$(mktemp -d -t kmsd-fuzz.XXXXXX)"
fi
trap 'rm -rf "$scratch"' EXIT
export TMPDIR="$scratch"

echo "fuzz.sh: building ${targets[*]}"
cargo fuzz build --debug-assertions

if [[ -n $runs ]]; then
    limit=(-runs="$runs")
else
    limit=(-max_total_time="$seconds")
fi

mkdir -p fuzz/artifacts/logs
passed=0
failed=0
for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target"
    log="fuzz/artifacts/logs/$target.log"
    echo "fuzz.sh: $target (${limit[*]})"
    if cargo fuzz run --debug-assertions "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
        "${limit[@]}" -timeout=25 -print_final_stats=1 >"$log" 2>&1; then
        passed=$((passed + 1))
        grep -E '^Done [0-9]+ runs|^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$log" |
            sed "s/^/  $target: /"
        grep -E '#[0-9]+[[:space:]]+DONE' "$log" | tail -1 | sed "s/^/  $target: /"
    else
        failed=$((failed + 1))
        echo "fuzz.sh: $target FAILED (log: $log)" >&2
        tail -40 "$log" >&2
        break
    fi
done
echo "fuzz: $passed passed, $failed failed"
((failed == 0))
