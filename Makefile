# Fresh-machine entry points. The CPU build of torch is pinned here (it lies on this
# machine's disk); the package itself only asks for torch>=2.2, so users keep their own.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup demo test lint clean

$(BIN)/lpfl: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

setup: $(BIN)/lpfl

demo: setup
	$(BIN)/lpfl demo

lint: setup
	$(BIN)/ruff check src tests benchmarks experiments examples
	$(BIN)/ruff format --check src tests benchmarks experiments examples

test: setup lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
