# The two README commands: `make repro` (the default pipeline) and `make test` (the suite).
# Both create or reuse .venv/ via .ci/setup first.
export DVC_NO_ANALYTICS=1
export MLFLOW_DISABLE_TELEMETRY=true
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export RAY_USAGE_STATS_ENABLED=0
export HF_HUB_OFFLINE=1
# dvc.yaml stages call `python -m unmask.stages <name>`: that must be the venv's python.
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export PYTEST_ARGS ?=

.PHONY: setup repro test test-fast lint
setup:
	@.ci/setup
repro: setup
	.venv/bin/dvc repro
test: setup
	.ci/pytest $(PYTEST_ARGS)
test-fast: setup
	.ci/pytest -m "not slow" $(PYTEST_ARGS)
lint: setup
	.venv/bin/ruff check src tests benchmarks flows
