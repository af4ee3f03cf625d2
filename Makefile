# One entry point: `make demo` runs the two-party workflow, `make test` type-checks and runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# PyTorch, pinned and installed first so that pip never picks a build on its own: on the project's machines
# this pin resolves to the CPU build kept on local disk; a bare `torch` requirement would pull a multi-GB CUDA
# build. Elsewhere, point pip at a CPU build through pip's own configuration (PIP_* variables), not here.
TORCH_PIN := torch==2.13.0

.PHONY: setup demo test docs bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e '.[test,bench,serve,ray,onnx]'
	touch $@

demo: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo.sh

test: setup
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -q

# docs/commands.md from every command's --help; tests/test_docs.py fails until it is rerun after a CLI change.
docs: setup
	$(BIN)/python docs/make_reference.py

bench: setup
	$(BIN)/python benchmarks/quality.py --fit-copy

clean:
	rm -rf $(VENV) demo .bench
