# make demo  — set up (or reuse) .venv and run the main job end to end
# make test  — set up (or reuse) .venv and run the test suite
# make models — install the models extra (torch, transformers) and export the benchmark models
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

MODELS_STAMP := $(VENV)/.installed-models

.PHONY: demo test conformance conformance-cpu models bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

test: $(STAMP)
	$(PY) -m pytest tests

# The whole ONNX backend test suite through the reference interpreter.
conformance: $(STAMP)
	$(PY) ../shared/tools/onnx_conformance.py kiln.onnx_backend --kw target=interpret

$(MODELS_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install -q -e ".[test,models]"
	touch $(MODELS_STAMP)

# The benchmark model set: export the six models (random weights) to .cache/models/ once.
models: $(MODELS_STAMP)
	$(PY) -m benchmarks.models

clean:
	rm -rf $(VENV) build *.egg-info

# kiln vs onnxruntime vs PyTorch eager on the model set (writes benchmarks/RESULTS.md)
bench: $(MODELS_STAMP)
	$(PY) -m benchmarks.bench
