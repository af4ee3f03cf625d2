# One entry point: `make demo` runs the two-party workflow, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# PyTorch, pinned, installed first so that pip never picks a build on its own. Where pip finds the CPU wheel
# first (a local wheel, as on the project's machines) that is what it installs; elsewhere give
# TORCH_INDEX=https://download.pytorch.org/whl/cpu, or PyPI's Linux wheel brings several GB of CUDA libraries.
TORCH_PIN := torch==2.13.0
TORCH_INDEX ?=

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) $(TORCH_PIN)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

demo: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo.sh

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/quality.py

clean:
	rm -rf $(VENV) demo .bench
