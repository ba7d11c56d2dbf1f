# make demo  — set up (or reuse) .venv and run the main job end to end
# make test  — set up (or reuse) .venv and run the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test conformance clean

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

clean:
	rm -rf $(VENV) build *.egg-info
