# disclatent: `make test` and `make book` create .venv (pinned, from requirements.lock) when it
# is missing, then do their job. All build outputs go to _build/ (delete it for a clean start).
#   make book [PROFILE=quick|default|paper] [DATA=/path/to/SPIDER]
#   make explore [PROFILE=...] [BUILD=...] [PORT=8866] (the explorers as a local Voila app,
#   reading the last `make book`) | make lab (JupyterLab on notebooks/, widgets live)
#   make test | make lint | make clean
#   make distclean
# `make lint` = ruff check + ruff format --check (src tests notebooks benchmarks) + mypy (src);
# the same hooks run on every commit after `.venv/bin/pre-commit install` (.pre-commit-config.yaml).

PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PROFILE ?= default
DATA    ?=
BUILD   ?= _build
PORT    ?= 8866
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
LINTED  := src tests notebooks benchmarks

.PHONY: all book explore browser lab test lint clean distclean venv

all: book

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name disclatent --display-name "Python (disclatent)" >/dev/null
	@touch $@

book: $(STAMP)
	$(PY) -m disclatent book --profile $(PROFILE) --data "$(DATA)" --build-dir $(BUILD)

explore: $(STAMP)
	$(PY) -m disclatent explore --profile $(PROFILE) --data "$(DATA)" --build-dir $(BUILD) --port $(PORT)

# headless Chromium and its driver (Debian packages) for the app's browser test
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
	  echo "chromium and chromedriver are installed"; \
	else $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver; fi

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy src

clean:
	rm -rf $(BUILD)

distclean: clean
	rm -rf $(VENV) src/*.egg-info .pytest_cache .ruff_cache .mypy_cache
