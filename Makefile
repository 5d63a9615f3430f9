# The two commands of the README. Both create (or reuse) the virtual environment in .venv.
#   make demo   runs the main job: the offline demo on the shipped toy-world model
#   make test   runs lint, type checks and the test suite
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pnpsam-installed
PYTHON ?= python3

# The browser tests drive Debian's Chromium (Playwright cannot download its own offline).
CHROMIUM_INSTALL := apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver

.PHONY: demo test install browser

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0 -e ".[dev]"
	touch $(STAMP)
	@echo "installed: run $(BIN)/pnpsam (or 'source $(BIN)/activate', then pnpsam)"

demo: $(STAMP)
	$(BIN)/pnpsam demo --out out/demo
	@echo "next: the README's quick start runs $(BIN)/pnpsam as written; or 'source $(BIN)/activate' and type pnpsam"

browser:
	@command -v chromium >/dev/null || { test "$$(id -u)" = 0 && $(CHROMIUM_INSTALL); } || \
	  { echo "make test: the browser tests need Chromium; install it with: sudo sh -c '$(CHROMIUM_INSTALL)'" >&2; exit 1; }

test: $(STAMP) browser
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy
	$(BIN)/pytest
