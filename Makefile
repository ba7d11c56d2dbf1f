# make demo  — set up (or reuse) .venv and run the main job end to end
# make test  — set up (or reuse) .venv and run the test suite
# make models — install the models extra (torch, transformers) and export the benchmark models
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

MODELS_STAMP := $(VENV)/.installed-models

.PHONY: demo test conformance conformance-cpu models bench bench-gemm check-models clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(MODELS_STAMP)
	PYTHONPATH=. $(PY) examples/demo.py

test: $(MODELS_STAMP)
	$(PY) -m pytest tests

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

# kiln vs onnxruntime vs PyTorch eager on the model set (writes benchmarks/RESULTS.md)
bench: $(MODELS_STAMP)
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
