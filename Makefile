# The kiosk's two commands: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint install tools bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## run: install, migrate, seed demo data into an empty database, serve on 127.0.0.1:8000
run: install
	$(BIN)/kiosk db upgrade
	$(BIN)/kiosk db seed
	$(BIN)/kiosk serve

## test: install, lint and type-check, then the whole suite
test: install lint tools
	$(BIN)/pytest

# Debian tools the tests drive: Chromium (browser tests), systemd-analyze (unit checks),
# shellcheck (install script). Installed when missing; outside CI a machine where that is not
# possible still runs every other test (those tests then skip and say why; in CI they fail).
TOOLS := chromium:chromium systemd-analyze:systemd shellcheck:shellcheck
tools:
	@missing=""; for pair in $(TOOLS); do \
	  command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair##*:}"; done; \
	[ -z "$$missing" ] || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	} || [ "$$CI" != true ] || { echo "required in CI:$$missing"; exit 1; }

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

## bench: the benchmarks in bench/, each against a reference in the same run -> BENCHMARKS.md
## (about 8 minutes; the first run also builds a database of a million sales in var/bench/)
bench: install tools
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
