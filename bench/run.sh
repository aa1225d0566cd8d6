#!/usr/bin/env bash
# The side-by-side benchmark suite (issue 6): evloop against asyncio, uvloop,
# tokio, smol, calloop and a raw-epoll floor. Writes BENCHMARKS.md,
# bench/results/chart.svg and bench/results/raw.tsv.
#
#   bench/run.sh            # full run, under 10 minutes on a 2-core machine
#   bench/run.sh --quick    # under 2 minutes (fewer ops, 3 rounds, shorter loads)
#   bench/run.sh --only micro,echo      # sections: micro echo bulk cross http eco memory counts
#   bench/run.sh --python [--quick]     # instead: the Python package against asyncio, uvloop
#                                       # and rloop (bench/python/peers.sh; its options follow)
#
# Other options go to `evloop-bench suite` (see bench/src/main.rs): --rounds N,
# --out FILE, --results DIR. On a fresh machine it installs what it needs:
# wrk, strace and valgrind from the distribution's packages (when run as root
# with apt-get; otherwise those sections are skipped with a note), and a
# virtualenv in bench/.venv with uvloop and httptools from PyPI.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
cd "$root"
log() { printf '[run.sh] %s\n' "$*" >&2; }

if [ "${1:-}" = "--python" ]; then
    shift
    exec "$here/python/peers.sh" "$@"
fi

# 1. System tools.
missing=()
for tool in wrk strace valgrind taskset; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    pkgs=()
    for tool in "${missing[@]}"; do
        case "$tool" in
            taskset) pkgs+=(util-linux) ;;
            *) pkgs+=("$tool") ;;
        esac
    done
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        log "installing ${pkgs[*]} (apt-get)"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null; } ||
            log "apt-get failed: sections needing ${missing[*]} will be skipped"
    else
        log "missing ${missing[*]} and no apt-get as root: those sections will be skipped"
    fi
fi

# 2. Python: a virtualenv with uvloop and httptools.
venv="$here/.venv"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    log "creating $venv"
    if ! "$python" -m venv "$venv" 2>/dev/null; then
        if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
            ver="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python$ver-venv" >/dev/null ||
                apt-get install -y -qq python3-venv >/dev/null
        fi
        rm -rf "$venv"
        "$python" -m venv "$venv"
    fi
fi
if ! "$venv/bin/python" -c 'import uvloop, httptools' 2>/dev/null; then
    log "installing uvloop and httptools into $venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check uvloop httptools
fi

# 3. Release builds: the harness (the suite, and what callgrind.sh and
#    strace.sh run) and the http_hello example.
log "building (release)"
cargo build --release -q -p evloop-bench --bin evloop-bench
cargo build --release -q --example http_hello
target="$(cargo metadata --format-version 1 --no-deps |
    "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"

# 4. The run.
export CARGO_TARGET_DIR="$target"   # so callgrind.sh/strace.sh reuse this build
exec "$target/release/evloop-bench" suite \
    --python "$venv/bin/python" \
    --http-hello "$target/release/examples/http_hello" \
    "$@"
