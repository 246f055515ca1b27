# The two commands of the README. Both build their own environment in .venv on first use.
#   make train   - train LDDU on the built-in synthetic data, then evaluate on its test split
#   make test    - the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
OUTPUT_DIR ?= outputs/lddu-synthetic

.PHONY: setup train test lint format fix-copies benchmark clean

setup: $(VENV)/.installed

# torch first, pinned to the CPU wheel this machine type carries: an unpinned request pulls a
# multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $@

train: setup
	$(PY) train.py --output_dir $(OUTPUT_DIR) --overwrite_output_dir

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) utils/check_copies.py

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Rewrite every `# Copied from` copy in modeling_*/ from its source (after editing a source).
fix-copies: setup
	$(PY) utils/check_copies.py --fix

benchmark: setup
	$(PY) benchmarks/bench_training.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
