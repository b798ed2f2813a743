# Quorum — the two set-up commands:
#   make demo   install everything, then run the app on the embedded default (SQLite, filesystem
#               broker, a real Celery worker, the demo project) at http://127.0.0.1:8000/
#   make test   install everything, then check the layer contracts and run the test suite
# Both honour DATABASE_URL / CELERY_BROKER_URL from the environment (see README.md).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0
# Where torch comes from: empty = PyPI (on Linux its CUDA build, with the NVIDIA libraries: a few GB);
# https://download.pytorch.org/whl/cpu for the CPU-only wheel (about 190 MB).
TORCH_INDEX ?=

.PHONY: demo test install browser bench clean

install: $(STAMP)

# torch first, pinned, so that the project's torch range is already satisfied and pip never
# replaces it with another build.
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py rundemo

# Browser tests drive Debian's Chromium through Playwright (no browser download). Installed here
# when we can (root with apt-get: a system package, said before it is done); without it those
# tests skip and say why.
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "make browser: installing the system packages chromium and chromium-driver with apt-get (as root)"; \
	  echo "  for the browser tests (tests/test_browser_*.py); without them those tests are skipped"; \
	  (apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 \
	   || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null)) \
	   || echo "could not install chromium: browser tests will be skipped"; \
	fi

# The layer contracts (import-linter, pyproject.toml) first: a broken contract fails in seconds.
test: $(STAMP) browser
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) var
