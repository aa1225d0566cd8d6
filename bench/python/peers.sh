#!/usr/bin/env bash
# The Python peer benchmarks (bench/python/peers.py): evloop's Python
# package, release build, against asyncio, uvloop and rloop from PyPI.
# Makes its own venv (bench/python/.venv), builds and installs evloop into
# it, installs wrk with apt-get when missing (as root; otherwise the
# uvicorn rows are left out, with a note), then runs peers.py.
#
#   bench/python/peers.sh                 # 5 rounds, about 5 minutes on 2 cores
#   bench/python/peers.sh --quick         # 3 rounds, a tenth of the ops, about 1 minute
#   bench/python/peers.sh --only call_soon,echo --markdown out.md
#   PYTHON=python3.12 bench/python/peers.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
log() { printf '[peers.sh] %s\n' "$*" >&2; }

if [[ -z "${PYTHON:-}" ]]; then
    PYTHON=python3
    for cand in "$HOME"/.pyenv/versions/3.11.*/bin/python3.11; do
        [[ -x "$cand" ]] && PYTHON="$cand"
    done
fi

if ! command -v wrk >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
        log "installing wrk (apt-get)"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; } ||
            log "apt-get could not install wrk: the uvicorn rows will be left out"
    else
        log "wrk is missing and cannot be installed (needs root and apt-get): the uvicorn rows will be left out"
    fi
fi

venv="$here/.venv"
if [[ ! -x "$venv/bin/python" ]]; then
    log "creating $venv ($PYTHON)"
    "$PYTHON" -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import uvloop, rloop, uvicorn, httptools, fastapi, maturin' 2>/dev/null; then
    log "installing the peers and uvicorn into $venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check \
        "maturin>=1.5,<2" uvloop rloop uvicorn httptools fastapi
fi

log "building evloop (the wheel profile: release with fat LTO)"
wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
"$venv/bin/maturin" build --quiet --profile wheel --manifest-path "$root/python/Cargo.toml" \
    --interpreter "$venv/bin/python" --out "$wheels"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$wheels"/*.whl

log "git $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u '+%Y-%m-%d %H:%M UTC')"
# From the caller's folder (relative paths in the options are its), and
# `import evloop` is the installed wheel: a script's own folder, not the
# working directory, is what Python puts first on sys.path.
"$venv/bin/python" "$here/peers.py" "$@"
