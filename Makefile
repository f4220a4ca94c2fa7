# The two commands a fresh machine needs: `make demo` and `make test`.
# Each sets up .venv from the committed lock file (uv.lock) with only python3 + pip present.
PYTHON ?= python3
VENV := .venv
TOOLS := .venv-tools
UV := $(TOOLS)/bin/uv
UV_VERSION := 0.13.9
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
LIVEFIN := $(VENV)/bin/livefin

.PHONY: setup demo test lint airflow bench clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q "uv==$(UV_VERSION)"

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python "$$(command -v $(PYTHON))"
	touch $@

setup: $(VENV)/.synced

demo: setup
	$(LIVEFIN) demo

# The Data Docs tests read the pages in a real headless browser (Debian's chromium), offline.
CHROMIUM_STAMP := $(VENV)/.chromium
$(CHROMIUM_STAMP): | $(VENV)/.synced
	command -v chromium >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	touch $@

test: setup $(CHROMIUM_STAMP)
	$(VENV)/bin/python -m pytest -q

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

airflow: setup
	$(VENV)/bin/python -m tools.airflow_local standalone

bench: setup
	$(VENV)/bin/python bench/run_all.py

clean:
	rm -rf state
