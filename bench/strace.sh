#!/usr/bin/env bash
# Syscalls per loop iteration, counted by `strace -c -f` (exact, noise-free).
#
#   bench/strace.sh
#
# Scenarios (each a harness benchmark run with `--ops N --rounds 1`, no
# warm-up; the same run with a smaller op count is subtracted, so loop
# construction and process start-up cancel out):
#   a) call_soon_chain   one callback per iteration, no fd registered
#   b) fd_chain          the same with one idle fd registered (a socketpair
#                        reader that never fires)
#   c) timer_wait_chain  call_later(1 ms) chain: the loop blocks in the poller
#                        once per link
# Prints each syscall's count per iteration and the total.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target-bench}"
out_dir="${OUT_DIR:-/tmp/evloop-strace}"

command -v strace >/dev/null || { echo "strace is not installed (apt-get install -y strace)" >&2; exit 1; }
(cd "$root" && cargo build --release -q -p evloop-bench)
bin="$CARGO_TARGET_DIR/release/evloop-bench"
mkdir -p "$out_dir"

# Writes "syscall calls errors" lines for one run.
counts() {
    local name="$1" n="$2" file="$out_dir/$1.$2"
    strace -f -c -o "$file.raw" "$bin" "$name" --ops "$n" --rounds 1 >/dev/null
    awk '$1 ~ /^[0-9.]+$/ && $NF != "total" {
            errors = (NF == 6) ? $5 : 0
            print $NF, $4, errors
         }' "$file.raw" >"$file"
}

# scenario title, benchmark, ops, base
scenario() {
    local title="$1" name="$2" n="$3" m="$4"
    counts "$name" "$n"
    counts "$name" "$m"
    echo "$title  ($name: ${n} vs ${m} iterations)"
    awk -v n="$n" -v m="$m" '
        FNR == NR { big[$1] = $2; bigerr[$1] = $3; next }
        { small[$1] = $2; smallerr[$1] = $3 }
        END {
            for (s in small) if (!(s in big)) big[s] = 0
            total = 0
            for (s in big) {
                d = (big[s] - small[s]) / (n - m)
                e = (bigerr[s] - smallerr[s]) / (n - m)
                if (d > 0.0005 || d < -0.0005) {
                    line = sprintf("    %-18s %8.3f /iter", s, d)
                    if (e > 0.0005) line = line sprintf("   (%.3f failing, EAGAIN etc.)", e)
                    print line
                    total += d
                }
            }
            printf "    %-18s %8.3f /iter\n", "TOTAL", total
        }' "$out_dir/$name.$n" "$out_dir/$name.$m" | sort -k1,1 | awk '/TOTAL/ {t = $0; next} {print} END {print t}'
}

scenario "a) call_soon chain, no fd" call_soon_chain 20000 2000
scenario "b) call_soon chain, one idle fd registered" fd_chain 20000 2000
scenario "c) blocking timer wait, call_later(1ms) chain" timer_wait_chain 60 10
