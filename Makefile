# The README's two commands end here. Everything installs into .venv, so a fresh machine needs only
# python3 (3.11+), make and, for the browser tests, Debian's chromium (installed below when we are root).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check

.PHONY: up test bench install install-dev chromium

$(PY):
	python3 -m venv $(VENV)

install: $(PY)
	$(PIP) -e .

install-dev: $(PY)
	$(PIP) -e '.[dev]'

# Playwright's own browser download cannot work offline; the tests drive Debian's chromium instead.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium is not installed: browser tests will be skipped"

up: install
	$(VENV)/bin/phonereader up

test: install-dev chromium
	$(VENV)/bin/pytest

bench: install-dev
	$(VENV)/bin/phonereader bench model
	$(VENV)/bin/phonereader bench recognize
	$(VENV)/bin/phonereader bench all
