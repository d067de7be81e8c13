# The README's two commands: `make demo` and `make test`. Both set up .venv on a fresh machine from
# uv.lock, the workspace's one lock file (the images install from it too). uv itself is bootstrapped
# with pip into .uv/, so a fresh machine needs only Python.
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .uv/bin/uv
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROJECTS := pyproject.toml $(wildcard */pyproject.toml services/*/pyproject.toml)
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never

.PHONY: demo test lint typecheck up clean bench faults lock

$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet --disable-pip-version-check 'uv==$(UV_VERSION)'

$(STAMP): $(UV) uv.lock $(PROJECTS)
	$(UV) sync --frozen --quiet --all-packages
	touch $(STAMP)

# After changing a dependency in any pyproject.toml: re-resolve uv.lock (commit it with the change).
lock: $(UV)
	$(UV) lock

demo: $(STAMP)
	$(BIN)/switchboard demo

up: $(STAMP)
	$(BIN)/switchboard up

# The console's browser tests (tests/console/test_browser.py) drive the system's chromium when there is one.
test: $(STAMP)
	@command -v chromium >/dev/null 2>&1 || echo "make test: no chromium installed, so the console's browser tests are SKIPPED (apt-get install chromium runs them)"
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Every performance number in the README, measured side by side with the naive approach: tables on
# stdout, JSON in bench/results/ (about 40 minutes on 2 cores; each script also takes --smoke).
bench: $(STAMP)
	$(BIN)/python -m bench.intake --profile
	$(BIN)/python -m bench.relay --profile
	$(BIN)/python -m bench.failover
	$(BIN)/python -m bench.console
	if [ -f bench/replay.py ]; then $(BIN)/python bench/replay.py; fi
	$(BIN)/python -m bench.capacity --profile
	$(BIN)/python -m bench.report

# The fault-injection suite (tests/faults), long variants included: processes, NATS and OpenAI failing on
# purpose; one row per scenario in $(FAULTS_REPORT), printed as a table at the end (about 3 minutes on 2 cores).
FAULTS_REPORT ?= build/faults.jsonl
faults: $(STAMP)
	mkdir -p $(dir $(FAULTS_REPORT))
	rm -f $(FAULTS_REPORT)
	SWITCHBOARD_FAULTS_REPORT=$(FAULTS_REPORT) $(BIN)/pytest tests/faults -m '' -p no:cacheprovider; \
	status=$$?; SWITCHBOARD_FAULTS_REPORT=$(FAULTS_REPORT) $(BIN)/python -m tests.faults.table; exit $$status

clean:
	rm -rf $(VENV) .uv .switchboard build
