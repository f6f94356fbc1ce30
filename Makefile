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
	@# the demo's state describes demo/data: started again without it, it starts from nothing
	@test -e demo/data/shop.db || rm -rf .runner
	$(BIN)/python demo/make_source.py demo/data/shop.db
	$(BIN)/runner validate
	$(BIN)/runner apply
	$(BIN)/runner run shop-to-warehouse
	$(BIN)/runner run customer-stats
	$(BIN)/runner run customer-history
	$(BIN)/runner run shop-snapshot
	$(BIN)/runner run orders-backfill
	$(BIN)/runner run orders-export
	$(BIN)/runner run shop-changes
	$(BIN)/runner run shop-changes-to-warehouse
	$(BIN)/runner run inbox-to-warehouse
	@echo
	@echo "demo done: the warehouse is demo/data/warehouse.db, Parquet files are in demo/data/lake/."
	@echo "Next: $(BIN)/runner status, $(BIN)/runner history shop-to-warehouse, $(BIN)/runner changes shop-changes,"
	@echo "      $(BIN)/runner describe job shop-to-warehouse (or 'source $(BIN)/activate' first, then plain runner ...)."

test: $(STAMP)
	$(BIN)/pytest -q -n auto

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

schemas: $(STAMP)
	$(BIN)/runner schemas --out schemas

# Benchmarks (bench/README.md): the shared workload in ../shared/bench, PostgreSQL and MariaDB on 127.0.0.1.
.PHONY: bench bench-A bench-B bench-C bench-X bench-memory bench-api bench-api-attacks bench-peers bench-scale \
	bench-verify bench-publish bench-http bench-consume bench-scaleout bench-split bench-files bench-files-peers

# The peers of bench-peers in an environment of their own (git-ignored, never needed by make test):
# Sling 1.4.11 is the last PyPI release whose wheel ships its binary.
PEERS := bench/.peers
PEERS_STAMP := $(PEERS)/.installed
PEERS_ARGS ?= --rows 1000000 --repeat 3

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

bench-peers: $(STAMP) $(PEERS_STAMP)
	$(BIN)/python bench/run.py A B --peers --warm $(PEERS_ARGS)

$(PEERS_STAMP):
	$(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/pip install --quiet --upgrade pip
	$(PEERS)/bin/pip install --quiet sling==1.4.11 sling-linux-amd64==1.4.11 \
		'dlt[postgres,sql_database]==1.31.0' pyarrow==26.0.1
	touch $(PEERS_STAMP)

bench-memory: $(STAMP)
	$(BIN)/python bench/run.py --memory

# Workers across machines (bench/scaleout.py): PostgreSQL and RabbitMQ on 127.0.0.1.
bench-scaleout: $(STAMP)
	$(BIN)/python bench/scaleout.py --jobs 200 --runs 150
# A split full copy (changes.split): 10M events PostgreSQL to PostgreSQL on 1 worker and on 2.
bench-split: $(STAMP)
	$(BIN)/python bench/split_copy.py --rows 10000000 --ranges 8
# Files (issue 16): 1M events as CSV into PostgreSQL beside psql \copy; Parquet read beside pyarrow's.
bench-files: $(STAMP)
	$(BIN)/python bench/files.py --rows 1000000 $(FILES_ARGS)
# The same with Sling 1.4.11 on the same files (CSV -> PostgreSQL, PostgreSQL -> Parquet), from the
# peers' environment (installed first if missing; bench/files.py says so and runs without it if it fails).
bench-files-peers: $(STAMP)
	-$(MAKE) $(PEERS_STAMP)
	$(BIN)/python bench/files.py --rows 1000000 --peers $(FILES_ARGS)

bench-api: $(STAMP)
	$(BIN)/python bench/api_load.py --clients 50 --seconds 30

bench-api-attacks: $(STAMP)
	$(BIN)/python bench/api_load.py --clients 50 --seconds 30 --attackers 5

# Cost as the work grows (SQLite only, no services): 1,000 job files, 10,000 runs of history,
# 500 jobs on one-minute crons in the daemon for 5 minutes (SCALE_ARGS="daemon --minutes 2" …).
SCALE_ARGS ?= all

bench-scale: $(STAMP)
	$(BIN)/python bench/scale.py $(SCALE_ARGS)

# `runner verify` of the 1M-row events table, PostgreSQL to PostgreSQL: equal, then 100 rows differ.
bench-verify: $(STAMP)
	$(BIN)/python bench/verify.py --rows 1000000

# Publishing (bench/publish.py): 100k events rows to RabbitMQ and NATS JetStream beside a bare client
# loop with confirms; RabbitMQ on 127.0.0.1:5672 (guest) and NATS with JetStream on 127.0.0.1:4222.
bench-publish: $(STAMP)
	$(BIN)/python bench/publish.py --rows 100000 $(PUBLISH_ARGS)

# An API into PostgreSQL (bench/http_api.py): 100k records over 1,000 pages from a local REST API, runner
# beside dlt's REST API source when the peers' environment installs (it is tried; runner runs alone if not).
bench-http: $(STAMP)
	-$(MAKE) $(PEERS_STAMP)
	$(BIN)/python bench/http_api.py --records 100000 --page 100 $(HTTP_ARGS)
# Consuming (bench/consume.py): 100k events messages RabbitMQ -> PostgreSQL beside a bare pika + COPY loop
bench-consume: $(STAMP)
	$(BIN)/python bench/consume.py --messages 100000 $(CONSUME_ARGS)

clean:
	rm -rf $(VENV) $(PEERS) .runner demo/data .pytest_cache
