# Two entry points on a fresh machine: `make run` (the demo) and `make test` (the suite).
# Both create .venv when it is missing. Models and clips come from EDGE_MODEL_DIR / EDGE_MEDIA_DIR,
# which default to ../shared/assets when that folder exists, else to models/ and media/
# (filled by `.venv/bin/edge models fetch`).

PYTHON ?= python3
VENV := .venv
EDGE := $(VENV)/bin/edge
SHARED_ASSETS := $(abspath ../shared/assets)
DURATION ?= 60
DEMO_CONFIG ?= config/demo.toml

ifneq ($(wildcard $(SHARED_ASSETS)/models),)
export EDGE_MODEL_DIR ?= $(SHARED_ASSETS)/models
export EDGE_MEDIA_DIR ?= $(SHARED_ASSETS)/videos
endif

.PHONY: run test venv subscribe clean

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# Runs the demo for DURATION seconds and prints the 'det' feed (stdout) beside the daemon log (stderr).
run: venv
	@$(EDGE) check-config $(DEMO_CONFIG)
	@$(EDGE) subscribe --topic det & subscriber=$$!; \
	$(EDGE) run --config $(DEMO_CONFIG) --duration $(DURATION); status=$$?; \
	kill $$subscriber; exit $$status

test: venv
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

subscribe: venv
	$(EDGE) subscribe --endpoint tcp://127.0.0.1:5556

clean:
	rm -rf $(VENV) build *.egg-info
