# make demo  — set up (or reuse) .venv and run the main job end to end
# make test  — set up (or reuse) .venv and run the test suite
# make models — install the models extra (torch, transformers) and export the benchmark models
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

MODELS_STAMP := $(VENV)/.installed-models
BENCH_STAMP  := $(VENV)/.installed-bench

.PHONY: demo test debs conformance conformance-cpu models bench bench-gemm check-models clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(MODELS_STAMP)
	PYTHONPATH=. $(PY) examples/demo.py

test: $(MODELS_STAMP) debs
	$(PY) -m pytest tests

# Debian packages the tools and their tests use: Graphviz (`dot`, kiln report's graph layout) and
# Chromium (the report's test loads the page headless). Installed only when missing.
DEBS := graphviz chromium fonts-dejavu-core
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
debs:
	@missing=""; for p in $(DEBS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# The whole ONNX backend test suite through the reference interpreter.
conformance: $(STAMP)
	$(PY) ../shared/tools/onnx_conformance.py kiln.onnx_backend --kw target=interpret

$(MODELS_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install -q -e ".[test,models]"
	touch $(MODELS_STAMP)

# The benchmark model set: export the six models (random weights) to .cache/models/ once.
models: $(MODELS_STAMP)
	PYTHONPATH=. $(PY) -m benchmarks.models

clean:
	rm -rf $(VENV) build *.egg-info

$(BENCH_STAMP): pyproject.toml $(MODELS_STAMP)
	$(PY) -m pip install -q -e ".[test,models,bench]"
	touch $(BENCH_STAMP)

# kiln vs onnxruntime, OpenVINO, PyTorch eager and torch.compile on the model set, batch 1 and 8
# (writes benchmarks/RESULTS.md and RESULTS.json)
bench: $(BENCH_STAMP)
	PYTHONPATH=. $(PY) -m benchmarks.bench

# GFLOP/s of kiln's generated GEMM (squares, transformer and MLP shapes) vs numpy's BLAS and the FMA peak
bench-gemm: $(STAMP)
	PYTHONPATH=. $(PY) -m benchmarks.bench_gemm

# every model of the set: compiled once, run at several batch sizes / sequence lengths vs onnxruntime
check-models: $(MODELS_STAMP)
	PYTHONPATH=. $(PY) -m benchmarks.check_models

# The whole ONNX backend test suite compiled to native code; the second run counts the cases that
# pass with no host op at all.
conformance-cpu: $(STAMP)
	$(PY) ../shared/tools/onnx_conformance.py kiln.onnx_backend --kw target=cpu
	$(PY) ../shared/tools/onnx_conformance.py kiln.onnx_backend --kw target=cpu --kw native_only=1
