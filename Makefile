# Two entry points on a fresh machine: `make run` (the demo) and `make test` (the suite).
# Both create .venv when it is missing. Models and clips come from EDGE_MODEL_DIR / EDGE_MEDIA_DIR,
# which default to ../shared/assets when that folder exists, else to models/ and media/
# (filled by `.venv/bin/edge models fetch`).

PYTHON ?= python3
VENV := .venv
EDGE := $(VENV)/bin/edge
SHARED_ASSETS := $(abspath ../shared/assets)
DURATION ?= 600
DEMO_CONFIG ?= config/demo-hub.toml
WEB_CONFIG ?= config/web-demo.toml
DEMO_DIR := build/demo
DEMO_PLATE ?= 皖K66666
# The demo daemon's feed, printed by `edge subscribe`; change it together with DEMO_CONFIG's publisher endpoint.
FEED_ENDPOINT ?= tcp://127.0.0.1:5556

ifneq ($(wildcard $(SHARED_ASSETS)/models),)
export EDGE_MODEL_DIR ?= $(SHARED_ASSETS)/models
export EDGE_MEDIA_DIR ?= $(SHARED_ASSETS)/videos
export EDGE_IMAGE_DIR ?= $(SHARED_ASSETS)/images
endif

.PHONY: run test venv subscribe clean

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# Runs the demo for DURATION seconds: the web service on http://127.0.0.1:8080/ (its admin password is
# printed at the first start), the daemon with two sample clips and a plate camera, and the hit feed on
# stdout beside the logs on stderr. One plate of the clip is on the watchlist, so hits appear.
run: venv
	@$(VENV)/bin/python -m edge.demo $(DEMO_DIR)
	@chmod 600 config/demo-api-token.txt
	@$(EDGE) check-config $(DEMO_CONFIG)
	@$(EDGE) watchlist plates list --db $(DEMO_DIR)/web-data/watchlists.sqlite 2>/dev/null | grep -q '$(DEMO_PLATE)' || \
	$(EDGE) watchlist plates add '$(DEMO_PLATE)' --list demo --reason 'demo: the yellow plate in the gate clip' \
	    --db $(DEMO_DIR)/web-data/watchlists.sqlite --actor demo
	@$(EDGE) web --config $(WEB_CONFIG) & web=$$!; \
	$(EDGE) subscribe --endpoint $(FEED_ENDPOINT) --topic hit. & subscriber=$$!; \
	$(EDGE) run --config $(DEMO_CONFIG) --duration $(DURATION); status=$$?; \
	kill $$subscriber $$web 2>/dev/null; wait $$web; exit $$status

test: venv
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

subscribe: venv
	$(EDGE) subscribe --endpoint tcp://127.0.0.1:5556

clean:
	rm -rf $(VENV) build *.egg-info
