# One entry point for people and CI. `make test` is what .ci/run and the README use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
DATA ?= data/synth
RUNS ?= runs
# torch and torchvision must come as a matching pair; these are the builds pip finds on this
# machine kind (x86_64, Python 3.11). Override on other platforms: make TORCH_PINS="torch torchvision".
TORCH_PINS ?= $(if $(filter x86_64,$(shell uname -m)),torch==2.14.1 torchvision==0.29.1,torch==2.9.1 torchvision==0.24.1)

.PHONY: venv test test-fast data demo clean-venv

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel setuptools
	$(PIP) install $(TORCH_PINS)
	$(PIP) install -e '.[test]'
	touch $@

venv: $(VENV)/.installed

test: venv
	$(PY) -m pytest

test-fast: venv
	$(PY) -m pytest -m "not slow and not browser"

data: venv
	$(PY) scripts/make_synthetic_deepfashion.py --out $(DATA)

clean-venv:
	rm -rf $(VENV)
