#!/usr/bin/env bash
# Builds the evloop Python package into a fresh venv for each interpreter
# and runs its pytest suite there. Works on a fresh machine: maturin and
# pytest come from PyPI.
#
#   python/ci.sh                      # CPython 3.11 and 3.12 (pyenv), else python3
#   PYTHONS="python3.12" python/ci.sh # chosen interpreters
#   PROFILE=release python/ci.sh      # optimised build (default: dev)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
profile="${PROFILE:-dev}"

if [[ -z "${PYTHONS:-}" ]]; then
    PYTHONS=""
    for v in 3.11 3.12; do
        for cand in "$HOME/.pyenv/versions/$v".*/bin/python"$v" "$(command -v "python$v" || true)"; do
            if [[ -x "$cand" ]]; then PYTHONS="$PYTHONS $cand"; break; fi
        done
    done
    [[ -n "$PYTHONS" ]] || PYTHONS="python3"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
status=0
for py in $PYTHONS; do
    version="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    echo "== CPython $version ($py)"
    venv="$work/venv-$version"
    "$py" -m venv "$venv"
    # fastapi, uvicorn and httpx: tests/test_web.py (the FastAPI demo).
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "maturin>=1.5,<2" "pytest>=7" fastapi uvicorn httpx
    build_flags=()
    [[ "$profile" == "release" ]] && build_flags+=(--release)
    "$venv/bin/maturin" build --quiet "${build_flags[@]}" \
        --manifest-path "$here/Cargo.toml" --interpreter "$venv/bin/python" --out "$work/wheels-$version"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$work/wheels-$version"/*.whl
    # From outside python/, so that `import evloop` finds the installed
    # wheel, not the source folder (which has no compiled module).
    (cd "$work" && "$venv/bin/python" -m pytest -q -p no:cacheprovider "$here/tests") || status=1
done
exit $status
