#!/usr/bin/env bash
# The README's test command: set up, then run the static checks and the whole test suite.
# Tests under tests/netns build their own namespaces and never change the root namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff"; .venv/bin/ruff check src tests bench
echo "== import contracts"; .venv/bin/lint-imports
echo "== mypy --strict"; .venv/bin/mypy
echo "== pytest"; .venv/bin/python -m pytest "$@"
