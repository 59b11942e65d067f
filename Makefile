# Two commands matter: `make demo` (the main job) and `make test` (the whole suite).
# TORCH_SPEC is the one place to choose the torch build. CPU default; a GPU user runs e.g.
#   make test TORCH_SPEC="torch==2.13.0" PIP_EXTRA="--index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PIP_EXTRA ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test test-slow demo lab checkpoint clean

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
	NESF_VIZ_SIZE=small $(PY) -m pytest -q -m "not slow" --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow tests/

demo: $(STAMP)
	$(VENV)/bin/nesf-viz demo

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

# Regenerates the shipped checkpoint nesf_viz/assets/synthetic_small.pt with this project's CLI.
CKPT_EPOCHS ?= 20
checkpoint: $(STAMP)
	$(VENV)/bin/nesf-viz train --train synthetic --val synthetic --out runs/ship --batch-size 32 \
		--epochs $(CKPT_EPOCHS) --patience 0 --seed 0
	$(VENV)/bin/nesf-viz export --checkpoint runs/ship/best.pt --out nesf_viz/assets/synthetic_small.pt

clean:
	rm -rf $(VENV)
