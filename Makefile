# Two commands after cloning (README): `make demo` and `make test`.
# Everything installs into .venv (ours) and .venv-sekmet (the test FHIR server,
# kept apart so its dependencies never leak into ours).
PYTHON ?= python3
VENV ?= .venv
SEKMET_VENV ?= .venv-sekmet
BIN = $(VENV)/bin

.PHONY: setup demo test lint bench ddl dist image

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

$(SEKMET_VENV)/.installed:
	$(PYTHON) -m venv $(SEKMET_VENV)
	$(SEKMET_VENV)/bin/pip install -q --upgrade pip
	$(SEKMET_VENV)/bin/pip install -q 'sekmet-fhir==0.1.1'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/leopard-etl demo

test: setup $(SEKMET_VENV)/.installed
	SEKMET_BIN=$(abspath $(SEKMET_VENV))/bin/sekmet $(BIN)/pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m benchmarks all --size small

ddl: setup
	$(BIN)/python -m leopard_etl.warehouse.schema

# What a site installs: dist/leopard_etl-*.tar.gz and the wheel built from it (README "Install")
dist: setup
	$(BIN)/python -m build --outdir dist .

# The container image (needs a Docker engine; docker/README.md)
VERSION = $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' src/leopard_etl/__init__.py)
image:
	docker build -t leopard-etl:$(VERSION) .
