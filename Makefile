# The two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
# TORCH_INDEX=https://download.pytorch.org/whl/cpu picks the CPU-only wheel where PyPI would give the CUDA build.
TORCH_INDEX ?=
DEMO_DIR ?= runs/demo
DEMO_DATA := data/fsdd-sample/manifest.csv

.PHONY: help venv demo test lint format bench bench-probe clean

help:
	@echo "make demo   - create $(VENV), install, train/evaluate/predict on the FSDD sample"
	@echo "make test   - lint, type-check and run the test suite"
	@echo "make lint   - ruff + mypy only;  make format - ruff format"
	@echo "make bench  - built-in encoder, leave-one-speaker-out on ../shared/data/fsdd"
	@echo "make bench-probe - the probe against plain logistic regression on the same embeddings"

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(BIN)/audioclf train --manifest $(DEMO_DATA) --out $(DEMO_DIR) --force
	$(BIN)/audioclf evaluate --model $(DEMO_DIR) --manifest $(DEMO_DATA)
	@echo
	@cat $(DEMO_DIR)/evaluation/report.md
	@echo
	$(BIN)/audioclf predict --model $(DEMO_DIR) data/fsdd-sample/recordings/7_theo_0.wav data/fsdd-sample/recordings/3_theo_5.wav --top-k 3

lint: venv
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy src
	$(BIN)/lint-imports

format: venv
	$(BIN)/ruff format src tests bench examples
	$(BIN)/ruff check --fix src tests bench examples

test: lint
	$(BIN)/pytest -q

bench: venv
	$(BIN)/python bench/fsdd_loso.py --data ../shared/data/fsdd/recordings

bench-probe: venv
	$(BIN)/python bench/probe_vs_logreg.py --fsdd ../shared/data/fsdd/recordings

clean:
	rm -rf $(VENV) runs build *.egg-info .pytest_cache .mypy_cache .ruff_cache
