#!/usr/bin/env bash
# Instructions per operation, counted by callgrind: repeatable on a noisy machine.
#
#   bench/callgrind.sh [--ops N] [--base M] [--warmup W] [--keep] [NAME...]
#
# For each benchmark NAME (default: the ones with targets) it runs the harness
# twice under `valgrind --tool=callgrind`, with exactly N and M operations
# (`--ops N --rounds 1 --warmup W`), and prints
#     (Ir(N) - Ir(M)) / (N - M)
# Only the measured round is counted (--toggle-collect on the harness's
# `measured_round`; `.ci/perf-gate` gates the core paths this way), after W untimed warm-up rounds (default 1, so malloc
# works from a warm heap as in the timed runs; --warmup 0 for a cold
# process); subtracting the M-op run removes the per-round constant (loop
# construction and teardown). Defaults: N=100000, M=1000.
# --keep leaves the callgrind.out files (in $OUT_DIR, default
# /tmp/evloop-callgrind) for `callgrind_annotate`.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target-bench}"
out_dir="${OUT_DIR:-/tmp/evloop-callgrind}"

ops=100000
base=1000
warmup=1
keep=0
names=()
while [ $# -gt 0 ]; do
    case "$1" in
        --ops) ops="$2"; shift 2 ;;
        --base) base="$2"; shift 2 ;;
        --warmup) warmup="$2"; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) names+=("$1"); shift ;;
    esac
done
if [ ${#names[@]} -eq 0 ]; then
    names=(call_soon_batch timer_schedule_cancel task_spawn future_roundtrip run_until_complete yield_now)
fi
if [ "$ops" -le "$base" ]; then
    echo "--ops ($ops) must be larger than --base ($base)" >&2
    exit 2
fi

command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install -y valgrind)" >&2; exit 1; }
(cd "$root" && cargo build --release -q -p evloop-bench --bin evloop-bench)
bin="$CARGO_TARGET_DIR/release/evloop-bench"
mkdir -p "$out_dir"

# Total instructions (Ir) of one run.
instructions() {
    local name="$1" n="$2" file="$out_dir/callgrind.out.$1.$2"
    valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$file" \
        --collect-atstart=no --toggle-collect='*measured_round*' \
        "$bin" run "$name" --ops "$n" --rounds 1 --warmup "$warmup" >/dev/null 2>"$file.log"
    local ir
    ir="$(awk '/^summary:/ {print $2}' "$file")"
    [ -n "$ir" ] || { echo "no summary in $file (see $file.log)" >&2; exit 1; }
    [ "$keep" = 1 ] || rm -f "$file" "$file.log"
    echo "$ir"
}

printf '%-22s %10s %16s %16s %12s\n' benchmark ops "Ir(ops)" "Ir(base=$base)" "Ir/op"
for name in "${names[@]}"; do
    big="$(instructions "$name" "$ops")"
    small="$(instructions "$name" "$base")"
    per_op="$(awk -v a="$big" -v b="$small" -v n="$ops" -v m="$base" 'BEGIN { printf "%.1f", (a - b) / (n - m) }')"
    printf '%-22s %10s %16s %16s %12s\n' "$name" "$ops" "$big" "$small" "$per_op"
done
if [ "$keep" = 1 ]; then
    echo "profiles kept in $out_dir (callgrind_annotate $out_dir/callgrind.out.NAME.$ops)"
fi
