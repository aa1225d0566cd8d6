#!/usr/bin/env bash
# Builds the evloop Python package into a fresh venv for each interpreter
# and runs there its pytest suite, then CPython's own asyncio suite with
# evloop injected (python/cpython_suite.py). Works on a fresh machine:
# maturin, pytest and the web packages come from PyPI, wrk from apt-get.
#
#   python/ci.sh                      # CPython 3.11 and 3.12 (pyenv), else python3
#   PYTHONS="python3.12" python/ci.sh # chosen interpreters
#   PROFILE=release python/ci.sh      # optimised build, the wheel profile (default: dev)
#   CPYTHON_SUITE=0 python/ci.sh      # pytest only
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

# wrk, for tests/test_web.py's load check: installed when missing if we
# can (root with apt-get); otherwise that one test skips, saying why.
if ! command -v wrk >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
        echo "python/ci.sh: installing wrk (apt-get)"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; } ||
            echo "python/ci.sh: apt-get could not install wrk: test_wrk_against_uvicorn will skip"
    else
        echo "python/ci.sh: wrk is missing and cannot be installed (needs root and apt-get):" \
            "test_wrk_against_uvicorn will skip"
    fi
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
status=0
for py in $PYTHONS; do
    version="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    echo "== CPython $version ($py)"
    venv="$work/venv-$version"
    "$py" -m venv "$venv"
    # fastapi, uvicorn, hypercorn, httpx, aiohttp: tests/test_web.py.
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "maturin>=1.5,<2" "pytest>=7" fastapi uvicorn hypercorn httpx aiohttp
    # An explicit profile: pyproject.toml's default is the LTO `wheel` one.
    build_flags=(--profile dev)
    [[ "$profile" == "release" ]] && build_flags=(--profile wheel)
    "$venv/bin/maturin" build --quiet "${build_flags[@]}" \
        --manifest-path "$here/Cargo.toml" --interpreter "$venv/bin/python" --out "$work/wheels-$version"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$work/wheels-$version"/*.whl
    # From outside python/, so that `import evloop` finds the installed
    # wheel, not the source folder (which has no compiled module).
    (cd "$work" && "$venv/bin/python" -m pytest -q -p no:cacheprovider "$here/tests") || status=1
    # CPython's test.test_asyncio on evloop: every module in its own
    # subprocess, two at a time, against cpython-expected-failures.txt.
    if [[ "${CPYTHON_SUITE:-1}" != 0 ]]; then
        (cd "$work" && "$venv/bin/python" "$here/cpython_suite.py") || status=1
    fi
done
exit $status
