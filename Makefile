# Two commands do everything on a fresh clone:
#   make demo   evaluate all-MiniLM-L6-v2 and BM25 on SciFact, write the report to results/demo/
#   make test   install, then run the whole test suite (fast tests + slow real-data tests)
#   make lint   ruff + mypy (CI runs it before the tests)
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# Datasets live beside the repository (../shared/datasets); override with DATA=/path
DATA ?= $(abspath ../shared/datasets)
export EMBEDLAB_DATA := $(DATA)
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install browser demo lint format test test-fast test-slow bench clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.lock requirements-nodeps.lock pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# Debian's chromium for the browser tests (Playwright drives it; its own browser download is not used)
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "warning: could not install chromium (needs root); browser tests will be skipped"

demo: install
	$(VENV)/bin/embedlab eval --dataset scifact --model all-MiniLM-L6-v2 --model bm25 --out results/demo

# ruff (rules and format) and mypy on src/: .ci/run runs this before the tests
lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

test: install browser
	$(PY) -m pytest -q

test-fast: install browser
	$(PY) -m pytest -q -m "not slow"

test-slow: install
	$(PY) -m pytest -q -m slow

bench: install
	$(PY) benchmarks/bench_eval_vs_sentence_transformers.py

clean:
	rm -rf $(VENV) results .pytest_cache
