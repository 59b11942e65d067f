# Two commands matter: `make demo` (the main job) and `make test` (the whole suite).
# TORCH_SPEC is the one place to choose the torch build. CPU default; a GPU user runs e.g.
#   make test TORCH_SPEC="torch==2.13.0" PIP_EXTRA="--index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PIP_EXTRA ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test test-fast demo lab clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	echo "$(TORCH_SPEC)" > $(VENV)/constraints.txt
	$(PY) -m pip install -q $(PIP_EXTRA) "$(TORCH_SPEC)"
	PIP_CONSTRAINT=$(VENV)/constraints.txt $(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg

demo: $(STAMP)
	$(VENV)/bin/nesf-viz demo

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf $(VENV)
