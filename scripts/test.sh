#!/usr/bin/env bash
# Install what the tests need (venv, package with the test extra, offline data) and run them.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh test
python -m pytest -q -p no:cacheprovider "$@"
