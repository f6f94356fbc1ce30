# Every target creates the virtual environment it needs; nothing is assumed installed but python3.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint schemas clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python demo/make_source.py demo/data/shop.db
	$(BIN)/runner validate
	$(BIN)/runner apply
	$(BIN)/runner run shop-to-warehouse
	$(BIN)/runner run customer-stats
	$(BIN)/runner run customer-history
	$(BIN)/runner run shop-snapshot

test: $(STAMP)
	$(BIN)/pytest -q -n auto

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

schemas: $(STAMP)
	$(BIN)/runner schemas --out schemas

# Benchmarks (bench/README.md): the shared workload in ../shared/bench, PostgreSQL and MariaDB on 127.0.0.1.
.PHONY: bench bench-A bench-B bench-C bench-X bench-memory bench-api bench-api-attacks

bench: $(STAMP)
	$(BIN)/python bench/run.py all --rows 1000000

bench-A: $(STAMP)
	$(BIN)/python bench/run.py A --rows 1000000

bench-B: $(STAMP)
	$(BIN)/python bench/run.py B --rows 1000000

bench-C: $(STAMP)
	$(BIN)/python bench/run.py C --rows 1000000

bench-X: $(STAMP)
	$(BIN)/python bench/run.py X --rows 1000000

bench-memory: $(STAMP)
	$(BIN)/python bench/run.py --memory

bench-api: $(STAMP)
	$(BIN)/python bench/api_load.py --clients 50 --seconds 30

bench-api-attacks: $(STAMP)
	$(BIN)/python bench/api_load.py --clients 50 --seconds 30 --attackers 5

clean:
	rm -rf $(VENV) .runner demo/data .pytest_cache
