# The README's two commands: `make demo` and `make test`. Both set up .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: demo test lint typecheck up clean bench faults

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/switchboard demo

up: $(STAMP)
	$(BIN)/switchboard up

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

# Every performance number in the README, measured side by side with the naive approach: tables on
# stdout, JSON in bench/results/ (about 30 minutes on 2 cores; each script also takes --smoke).
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.intake --profile
	$(BIN)/python -m bench.relay --profile
	$(BIN)/python -m bench.failover
	if [ -f bench/replay.py ]; then $(BIN)/python bench/replay.py; fi
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
	rm -rf $(VENV) .switchboard build *.egg-info
