# senformer: install, test, demo. Torch is pinned to the CPU wheel here; pyproject declares a range.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH_PIN ?= torch==2.13.0

.PHONY: install test test-quick demo bench-attention clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PIN)
	$(PIP) install -q -e ".[test,bigwig]"
	# The peer (enformer-pytorch) for the parity tests; its transformers pin keeps our CPU torch.
	$(PIP) install -q -e ".[peer]"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q -n 2 tests

test-quick: install
	$(PY) -m pytest -q -n 2 -m "not slow" tests

demo: install
	$(VENV)/bin/senformer demo

bench-attention: install
	$(VENV)/bin/senformer benchmark attention

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
