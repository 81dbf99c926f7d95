# Two commands for users: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: install demo test ui bench e2e sandbox clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing the pipeline and its test dependencies into $(VENV) ..."
	$(PIP) install --upgrade pip
	$(PIP) install -e ".[test,bench,lake]"
	@touch $(STAMP)

install: $(STAMP)

## make demo: sandbox + 30-day backfill + incremental run for all five providers, then a summary
demo: install
	$(BIN)/feedback-pipeline demo

## make test: the whole test suite (CI runs exactly this), in TEST_WORKERS processes (pytest-xdist;
## each test file stays in one process, so its module-scoped sandbox is generated once)
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

## make ui: sandbox + Dagster code server, webserver (http://127.0.0.1:3000) and daemon
ui: install
	$(BIN)/feedback-pipeline ui

## make sandbox: only the provider sandbox, printing the variables that point at it
sandbox: install
	$(BIN)/feedback-pipeline sandbox

## make bench: throughput, incremental cost and memory (prints a table, writes bench/results/;
## BENCH_ARGS="--records 1000000 --repeat 1" adds the large point of the growth curve), then the
## Iceberg copy's commit cost at each of LAKE_RECORDS stored rows, then the dashboard's build time
## on a generated warehouse (DASHBOARD_ROWS, default 1,000,000)
DASHBOARD_ROWS ?= 1000000
LAKE_RECORDS ?= 200000 1000000
bench: install
	$(BIN)/python -m bench.run $(BENCH_ARGS)
	for n in $(LAKE_RECORDS); do $(BIN)/python -m bench.lake --records $$n --repeat 3 --output bench/results/lake-$$n.json || exit 1; done
	$(BIN)/python -m bench.dashboard --rows $(DASHBOARD_ROWS)

## make e2e: drives the real web UI in headless Chromium (installs Debian chromium packages);
## screenshots land in screenshots/. Not part of make test (testpaths only has feedback_pipeline_tests).
e2e: install
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq chromium chromium-driver fonts-noto-color-emoji fonts-noto-cjk)
	$(PIP) install -e ".[e2e]"
	$(BIN)/python -m pytest -p no:cacheprovider e2e

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
