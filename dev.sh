#!/usr/bin/env bash
# optforge developer entry point: `./dev.sh demo` runs the main job, `./dev.sh test` the tests.
# Both create .venv/ and install what they need on first use (Python 3.11 + pip is enough).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.optforge-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # the CPU build of torch first: a bare `torch` requirement could pull a multi-GB CUDA build
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[dev,ray]"  # ray: the cluster backend's tests
  touch "$stamp"
fi
cmd=${1:-help}
shift || true
case "$cmd" in
  demo) exec .venv/bin/optforge demo "$@" ;;
  test) exec .venv/bin/python -m pytest -n 2 "$@" ;;
  lint) exec .venv/bin/ruff check . ;;
  *) echo "usage: ./dev.sh demo|test|lint" >&2; exit 2 ;;
esac
