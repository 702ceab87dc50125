# Convenience wrappers around scripts/ (the README commands work without make).
.PHONY: setup test demo unit lint bench clean
setup:
	bash scripts/setup.sh
test:
	bash scripts/test.sh
demo:
	bash scripts/demo.sh
unit: setup
	.venv/bin/python -m pytest tests/unit
lint: setup
	.venv/bin/ruff check src tests bench && .venv/bin/lint-imports && .venv/bin/mypy
clean:
	rm -rf .venv build dist src/*.egg-info
