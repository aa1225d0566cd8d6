#!/usr/bin/env bash
# Syscalls per loop iteration or per I/O op, counted by `strace -c -f`
# (exact, noise-free).
#
#   bench/strace.sh [core|io]      (default: both)
#
# Scenarios (each a harness benchmark, `evloop-bench run NAME --ops N --rounds 1`, no
# warm-up; the same run with a smaller op count is subtracted, so loop
# construction and process start-up cancel out):
#   a) call_soon_chain   one callback per iteration, no fd registered
#   b) fd_chain          the same with one idle fd registered (a socketpair
#                        reader that never fires)
#   c) timer_wait_chain  call_later(1 ms) chain: the loop blocks in the poller
#                        once per link
#   d)-g) echo_protocol_1k, echo_raw_epoll_1k, echo_streams_1k, echo_tokio_1k:
#                        per 1 KiB round trip (expected for the epoll loops:
#                        recv + send per side, one epoll_wait per iteration)
#   h)-j) bulk_protocol, bulk_streams, bulk_raw_epoll: per 256 KiB chunk
# Prints each syscall's count per iteration (or op) and the total.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target-bench}"
out_dir="${OUT_DIR:-/tmp/evloop-strace}"

command -v strace >/dev/null || { echo "strace is not installed (apt-get install -y strace)" >&2; exit 1; }
(cd "$root" && cargo build --release -q -p evloop-bench --bin evloop-bench)
bin="$CARGO_TARGET_DIR/release/evloop-bench"
mkdir -p "$out_dir"

# Writes "syscall calls errors" lines for one run.
counts() {
    local name="$1" n="$2" file="$out_dir/$1.$2"
    strace -f -c -o "$file.raw" "$bin" run "$name" --ops "$n" --rounds 1 >/dev/null
    awk '$1 ~ /^[0-9.]+$/ && $NF != "total" {
            errors = (NF == 6) ? $5 : 0
            print $NF, $4, errors
         }' "$file.raw" >"$file"
}

# scenario title, benchmark, ops, base [unit]
scenario() {
    local title="$1" name="$2" n="$3" m="$4" unit="${5:-iter}"
    counts "$name" "$n"
    counts "$name" "$m"
    echo "$title  ($name: ${n} vs ${m} ${unit}s)"
    awk -v n="$n" -v m="$m" -v unit="$unit" '
        FNR == NR { big[$1] = $2; bigerr[$1] = $3; next }
        { small[$1] = $2; smallerr[$1] = $3 }
        END {
            for (s in small) if (!(s in big)) big[s] = 0
            total = 0
            for (s in big) {
                d = (big[s] - small[s]) / (n - m)
                e = (bigerr[s] - smallerr[s]) / (n - m)
                if (d > 0.0005 || d < -0.0005) {
                    line = sprintf("    %-18s %8.3f /%s", s, d, unit)
                    if (e > 0.0005) line = line sprintf("   (%.3f failing, EAGAIN etc.)", e)
                    print line
                    total += d
                }
            }
            printf "    %-18s %8.3f /%s\n", "TOTAL", total, unit
        }' "$out_dir/$name.$n" "$out_dir/$name.$m" | sort -k1,1 | awk '/TOTAL/ {t = $0; next} {print} END {print t}'
}

which="${1:-all}"
case "$which" in core|io|all) ;; *) sed -n '2,20p' "$0"; exit 2 ;; esac
if [ "$which" != io ]; then
    scenario "a) call_soon chain, no fd" call_soon_chain 20000 2000
    scenario "b) call_soon chain, one idle fd registered" fd_chain 20000 2000
    scenario "c) blocking timer wait, call_later(1ms) chain" timer_wait_chain 60 10
fi
if [ "$which" != core ]; then
    scenario "d) 1 KiB echo, evloop Protocol server and client" echo_protocol_1k 4000 400 "round trip"
    scenario "e) 1 KiB echo, raw level-triggered epoll loop" echo_raw_epoll_1k 4000 400 "round trip"
    scenario "f) 1 KiB echo, evloop streams server and client" echo_streams_1k 4000 400 "round trip"
    scenario "g) 1 KiB echo, tokio current-thread runtime" echo_tokio_1k 4000 400 "round trip"
    scenario "h) bulk, evloop Protocol pair" bulk_protocol 512 64 chunk
    scenario "i) bulk, evloop streams" bulk_streams 512 64 chunk
    scenario "j) bulk, raw epoll loop" bulk_raw_epoll 512 64 chunk
fi
