# xlir: `make reproduce` runs every notebook (quick profile, offline by default);
# `make test` runs the unit tests, then every notebook in the smoke profile.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KERNEL := xlir
NOTEBOOKS := $(sort $(wildcard notebooks/0*.ipynb))

# Offline data: the copy beside the checkout (shared/data layout) unless XLIR_DATA_DIR is set.
# (An empty value is not exported: the kit then downloads, and the tests say where they looked.)
XLIR_DATA_DIR ?= $(abspath $(wildcard ../shared/data))
ifneq ($(strip $(XLIR_DATA_DIR)),)
export XLIR_DATA_DIR
else
unexport XLIR_DATA_DIR
endif
# torch comes, by default, from the indexes pip is configured with, like every other requirement:
# on Linux x86-64, PyPI's torch is the CUDA build (what a GPU machine needs; several GB with its
# nvidia-* libraries); on macOS and Windows it is CPU-only. TORCH_INDEX names a PyTorch wheel
# index to install torch from alone, before the rest: `make setup TORCH_INDEX=cpu` is the CPU-only
# build for a laptop without a GPU (download.pytorch.org/whl/cpu); cu126 and the like, or a full
# URL, pick another. It takes effect when .venv is set up (a fresh checkout, or after rm -rf .venv).
TORCH_INDEX ?=
TORCH_REQUIREMENT := $(shell grep -E '^torch[=<>~!]' requirements.txt)
TORCH_INDEX_URL := $(if $(findstring ://,$(TORCH_INDEX)),$(TORCH_INDEX),https://download.pytorch.org/whl/$(strip $(TORCH_INDEX)))

export PYTHONHASHSEED := 0
export TOKENIZERS_PARALLELISM := false
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: help setup reproduce test unit-tests notebook-tests check-stripped strip figures benchmarks recipe-study clean-smoke explorer-screenshot browser-test

help:
	@echo "make setup       .venv with the pinned stack (TORCH_INDEX=cpu: torch's CPU-only build, for a laptop without a GPU)"
	@echo "make reproduce   run notebooks 01-06 in the quick profile (writes results/, figures/, notebooks/executed/)"
	@echo "make test        unit tests, then every notebook in the smoke profile, then a stripped-notebook check"
	@echo "make figures     rebuild every figure and table from results/ (no training, no encoding)"
	@echo "make benchmarks  run benchmarks/*.py (JSON on stdout)"
	@echo "make browser-test  notebook 06 (smoke) in JupyterLab and headless Chromium: type a question, press Run, check both lists"
	@echo "make explorer-screenshot  the same in the quick profile, screenshot of the live page: figures/06_explorer.png"
	@echo "make recipe-study  the quick profile's recipe grid on mlqa-r-dev (hours; resumes; writes results/recipe_*)"

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
ifneq ($(strip $(TORCH_INDEX)),)
	$(PY) -m pip install --quiet --index-url $(TORCH_INDEX_URL) "$(TORCH_REQUIREMENT)"
endif
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --prefix $(VENV) --name $(KERNEL) --display-name "xlir (.venv)" > /dev/null
	touch $(STAMP)

setup: $(STAMP)

# Each notebook in a fresh kernel, timed into results/runtimes.csv; the executed copies go to
# notebooks/executed/ (quick) or build/notebooks/<profile>/ (xlir_utils/notebook_runs.py). Then what
# `make figures` writes: every figure, the README's generated blocks, the runtime texts.
reproduce: $(STAMP)
	XLIR_PROFILE=$${XLIR_PROFILE:-quick} $(PY) -m xlir_utils.notebook_runs
	XLIR_PROFILE=$${XLIR_PROFILE:-quick} $(PY) -m xlir_utils.reporting
	@echo "Results: $(CURDIR)/results  Figures: $(CURDIR)/figures"

test: $(STAMP) unit-tests notebook-tests check-stripped

# The unit tests run in TEST_WORKERS processes (pytest-xdist) of one thread each: most tests are
# small, so two one-thread workers finish sooner than one two-thread process (414 s against 592 s
# on a fresh clone, 2 cores). Each worker loads its own models: raise it only with memory to spare.
TEST_WORKERS ?= 2
unit-tests: $(STAMP)
	XLIR_PROFILE=smoke OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest tests -q -p no:cacheprovider -n $(TEST_WORKERS)

# (--durations=0: each notebook's run time, at the end of the log)
notebook-tests: $(STAMP)
	XLIR_PROFILE=smoke $(PY) -m pytest --nbmake --nbmake-kernel=$(KERNEL) --nbmake-timeout=1800 -q -p no:cacheprovider --durations=0 $(NOTEBOOKS)

check-stripped: $(STAMP)
	$(VENV)/bin/nbstripout --verify --keep-id $(NOTEBOOKS)

strip: $(STAMP)
	$(VENV)/bin/nbstripout --keep-id $(NOTEBOOKS)

figures: $(STAMP)
	$(PY) -m xlir_utils.reporting

recipe-study: $(STAMP)
	XLIR_PROFILE=quick $(PY) -m xlir_utils.recipe_study

benchmarks: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b; done

clean-smoke:
	rm -rf runs/smoke results/smoke figures/smoke data/processed/smoke

# Notebook 06 in a real front end (tests/browser): JupyterLab on localhost, headless Chromium through
# chromedriver (Selenium) runs every cell, types a question into the explorer, presses Run and checks
# both ranked lists against the Python API. Debian's chromium and chromium-driver; fonts-noto-core
# and fonts-noto-cjk for every script of XQuAD-R. browser-test: smoke profile, screenshot in
# build/browser/; explorer-screenshot: quick profile, screenshot to figures/06_explorer.png.
CHROMIUM ?= chromium
CHROMEDRIVER ?= chromedriver
BROWSER_PACKAGES := chromium chromium-driver fonts-noto-core fonts-noto-cjk
NEED_CHROMIUM = command -v $(CHROMIUM) > /dev/null && command -v $(CHROMEDRIVER) > /dev/null || { \
  echo "needs Chromium and chromedriver: apt-get install $(BROWSER_PACKAGES)" \
       "(or CHROMIUM=/path/to/chromium CHROMEDRIVER=/path/to/chromedriver)"; exit 1; }
BROWSER_PYTEST = CHROMIUM=$(CHROMIUM) CHROMEDRIVER=$(CHROMEDRIVER) $(PY) -m pytest tests/browser -m browser -q -p no:cacheprovider

browser-test: $(STAMP)
	@$(NEED_CHROMIUM)
	XLIR_PROFILE=$${XLIR_PROFILE:-smoke} $(BROWSER_PYTEST)

explorer-screenshot: $(STAMP)
	@$(NEED_CHROMIUM)
	@profile=$${XLIR_PROFILE:-quick}; out=figures; [ "$$profile" = quick ] || out=figures/$$profile; \
	mkdir -p $$out && XLIR_PROFILE=$$profile XLIR_SCREENSHOT=$(CURDIR)/$$out/06_explorer.png $(BROWSER_PYTEST) && \
	echo "wrote $$out/06_explorer.png"
