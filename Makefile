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

test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

schemas: $(STAMP)
	$(BIN)/runner schemas --out schemas

clean:
	rm -rf $(VENV) .runner demo/data .pytest_cache
