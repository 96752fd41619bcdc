# mirrorscope developer entry points.  `make run` and `make test` work on a fresh
# machine with only Python >= 3.11: they create .venv and install what they need.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DB ?= mirrorscope.db
DEMO ?= pcaps/demo.pcap
PYTEST_ARGS ?=
FUZZ_SECONDS ?= 300

.PHONY: run test dev lint fuzz bench bench-instructions pcaps clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip "setuptools>=75" wheel

# Strict editable install: a link tree, so import-linter sees the package-dir
# mapping (a lenient editable install hides mirrorscope.capture & co from it).
# It is re-run whenever a file is added, which `make dev` does cheaply.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e ".[test]" --config-settings editable_mode=strict
	touch $(STAMP)

dev: $(STAMP)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=strict

run: dev
	$(BIN)/mirrorscope replay $(DEMO) --db sqlite:///$(DB)
	$(BIN)/mirrorscope transactions --db sqlite:///$(DB) --limit 10
	$(BIN)/mirrorscope inventory --db sqlite:///$(DB)
	$(BIN)/mirrorscope findings --db sqlite:///$(DB)
	$(BIN)/mirrorscope report --db sqlite:///$(DB) -o mirrorscope-report.html
	@echo "HTML report: $(CURDIR)/mirrorscope-report.html"

lint: dev
	$(BIN)/ruff check .
	cd $(VENV) && $(CURDIR)/$(BIN)/lint-imports --config $(CURDIR)/pyproject.toml  # outside the root: the source folder would shadow the install

test: dev
	$(BIN)/ruff check .
	cd $(VENV) && $(CURDIR)/$(BIN)/lint-imports --config $(CURDIR)/pyproject.toml  # outside the root: the source folder would shadow the install
	$(BIN)/pytest $(PYTEST_ARGS)

fuzz: dev
	$(BIN)/python tests/fuzz/run_fuzz.py --seconds $(FUZZ_SECONDS)

bench: dev
	$(BIN)/python bench/bench_replay.py

# Instructions per stage under callgrind: repeatable where wall time is not (needs valgrind, gcc).
bench-instructions: dev
	$(BIN)/python bench/bench_instructions.py

pcaps: dev
	$(BIN)/python pcaps/make_pcaps.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
