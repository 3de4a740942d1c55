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

# The report's browser test drives Debian's chromium through chromedriver (selenium, no
# browser downloads). Installed here when missing and we are root; otherwise say how.
browser() {
  if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "dev.sh: installing chromium and chromium-driver (the report's browser test)" >&2
    if apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; then
      return 0
    fi
    echo "dev.sh: the chromium install failed" >&2
  fi
  echo "dev.sh: no /usr/bin/chromium + /usr/bin/chromedriver: the browser test will be" \
    "skipped (install: sudo apt-get install chromium chromium-driver)" >&2
}

case "$cmd" in
  demo) exec .venv/bin/optforge demo "$@" ;;
  test) browser; exec .venv/bin/python -m pytest -n 2 "$@" ;;
  lint) exec .venv/bin/ruff check . ;;
  *) echo "usage: ./dev.sh demo|test|lint" >&2; exit 2 ;;
esac
