# senformer: install, test, demo. Torch is pinned to the CPU wheel here; pyproject declares a range.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH_PIN ?= torch==2.13.0

.PHONY: install install-test test test-quick test-full-length docs demo bench-attention clean

# `make install`: what the library, the commands and the demo need (bigWig output, Hugging Face downloads).
$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PIN)
	$(PIP) install -q -e ".[bigwig,hub]"
	touch $@

# `make test` adds the test tools and the peers (enformer-pytorch, borzoi-pytorch) for the parity tests; their
# one transformers pin keeps our CPU torch.
$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -q -e ".[test,peer]"
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

test: install-test
	$(PY) -m pytest -q -n 2 -m "not full_length" tests

test-quick: install-test
	$(PY) -m pytest -q -n 2 -m "not slow and not full_length" tests

# Published-size models at full length against their peers (Borzoi at 524,288 bp: minutes, about 5 GB).
test-full-length: install-test
	$(PY) -m pytest -q -m full_length tests

# `make docs`: the documentation site into site/ (warnings are errors, as in the test suite).
docs: install-test
	$(VENV)/bin/mkdocs build --strict --site-dir site

# make demo THREADS=1: torch threads (default: the cores free when it starts); it says up front how long it takes
demo: install
	$(VENV)/bin/senformer demo $(if $(THREADS),--threads $(THREADS))

bench-attention: install
	$(VENV)/bin/senformer benchmark attention

clean:
	rm -rf $(VENV) build dist site src/*.egg-info .pytest_cache
