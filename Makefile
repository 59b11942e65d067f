# Two commands matter: `make demo` (the main job) and `make test` (the whole suite).
# TORCH_SPEC is the one place to choose the torch build. CPU default; a GPU user runs e.g.
#   make test TORCH_SPEC="torch==2.13.0" PIP_EXTRA="--index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PIP_EXTRA ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test test-slow demo lab docs checkpoint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	echo "$(TORCH_SPEC)" > $(VENV)/constraints.txt
	$(PY) -m pip install -q $(PIP_EXTRA) "$(TORCH_SPEC)"
	PIP_CONSTRAINT=$(VENV)/constraints.txt $(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

# The whole suite (CI runs exactly this). Notebooks run their small variant (NESF_VIZ_SIZE=small);
# tests marked `slow` (long end-to-end checks) run with `make test-slow`.
test: $(STAMP)
	$(PY) -m ruff check nesf_viz tests benchmarks
	NESF_VIZ_SIZE=small $(PY) -m pytest -q -m "not slow" --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow tests/

demo: $(STAMP)
	$(VENV)/bin/nesf-viz demo

# The documentation site (Sphinx + MyST-NB): the notebooks executed, the API reference, the results
# pages; offline. Open docs/_build/html/index.html.
docs: $(STAMP)
	rm -rf docs/_build docs/notebooks && mkdir -p docs/notebooks && cp notebooks/*.ipynb docs/notebooks/
	$(VENV)/bin/sphinx-build -q -b html docs docs/_build/html
	@echo "docs: docs/_build/html/index.html"

# page_config.json stops the "Build Recommended" dialog that Dash's lab extension (pulled in by
# crystal-toolkit) raises on every launch; --allow-root because containers run as root.
lab: $(STAMP)
	mkdir -p $(VENV)/etc/jupyter/labconfig
	echo '{"buildCheck": false, "buildAvailable": false}' > $(VENV)/etc/jupyter/labconfig/page_config.json
	$(VENV)/bin/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root,)

# Regenerates the shipped embedded-data model nesf_viz/assets/synthetic.pt and its record
# synthetic.json with this project's CLI (the quick recipe, ~10 min on a 2-core CPU).
checkpoint: $(STAMP)
	$(VENV)/bin/nesf-viz benchmark --datasets synthetic --recipe quick --epochs 50 --max-minutes 10 \
		--decode fast --probe-minutes 1 --seeds 0 --out out/tta-synthetic
	$(PY) benchmarks/ship_model.py --results out/tta-synthetic/results.json --name synthetic

clean:
	rm -rf $(VENV)
