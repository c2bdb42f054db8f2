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

DEMO_CKPT ?= runs/demo/checkpoint.pt
DEMO_INDEX ?= indexes/demo
PORT ?= 8501
# The page listens on this machine only unless told otherwise: `make demo HOST=0.0.0.0` serves every
# network interface. Taken from the command line only (csh and tcsh export HOST, the machine's name).
HOST := $(if $(filter command line,$(origin HOST)),$(HOST),127.0.0.1)

.PHONY: venv test test-fast screenshot mutation data demo demo-assets clean-venv

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel setuptools
	$(PIP) install $(TORCH_PINS)
	$(PIP) install -e '.[test]'
	# milvus-lite (a test extra) requires faiss-cpu, whose files replace faiss-gpu's in the one `faiss`
	# module; where faiss-gpu is the platform's FAISS (setup.cfg), its build goes back on top.
	if [ "$$(uname -s)-$$(uname -m)" = "Linux-x86_64" ]; then $(PIP) install -q --force-reinstall --no-deps faiss-gpu; fi
	touch $@

venv: $(VENV)/.installed

test: venv
	$(PY) -m pytest

test-fast: venv
	$(PY) -m pytest -m "not slow and not browser"

# The README's picture of the page: the browser test's screenshot, written into docs/ on purpose
# (tests otherwise write only to temporary folders).
screenshot: venv
	FASHIONNET_SCREENSHOT=$(CURDIR)/docs/screenshot.png $(PY) -m pytest tests/test_webui_browser.py -q

# Mutation testing of the core modules (mutmut, in a scratch copy under build/mutation; ~15 min on
# 2 cores). Not part of `make test`. Results and how to read them: docs/TESTING.md.
mutation: venv
	$(PIP) install -q -e '.[mutation]'
	scripts/mutation_test.sh

data: $(DATA)/SYNTHETIC.json

$(DATA)/SYNTHETIC.json: | $(VENV)/.installed
	$(PY) scripts/make_synthetic_deepfashion.py --out $(DATA) --preview $(DATA)/preview.png

# A checkpoint that is already there is used as it is; delete it to retrain.
$(DEMO_CKPT): | $(DATA)/SYNTHETIC.json
	$(PY) scripts/train_fashionnet.py --config configs/demo.yaml --data-root $(DATA)/consumer2shop $(DATA)/inshop --output-dir $(dir $(DEMO_CKPT))

$(DEMO_INDEX)/manifest.json: $(DEMO_CKPT)
	$(VENV)/bin/indexer build --checkpoint $(DEMO_CKPT) --data-root $(DATA)/consumer2shop --out $(DEMO_INDEX)

demo-assets: venv $(DEMO_INDEX)/manifest.json

# python -m webui sets the address, the port and the upload limit in code (webui/__main__.py).
demo: demo-assets
	@echo ""
	@echo "  FashionNet search is starting at http://$(if $(filter 0.0.0.0 ::,$(HOST)),localhost,$(HOST)):$(PORT)  (Ctrl+C stops it)"
	@echo ""
	$(PY) -m webui --host $(HOST) --port $(PORT) --index $(DEMO_INDEX)

clean-venv:
	rm -rf $(VENV)
