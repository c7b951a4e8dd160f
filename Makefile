# Two commands on a fresh clone: `make demo` and `make test`. Each sets up .venv by itself.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deepdraw-installed

.PHONY: install demo test test-fast bench lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch pinned; the CPU wheel of this version is cached on these machines (pip's find-links)
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: install
	# the demo's dataset, then the shipped paper-scale models on its test set (configs/demo-zoo.toml),
	# then every other stage of the demo (its report links to the shipped models' report)
	$(VENV)/bin/deepdraw pipeline configs/demo.toml --only characters,startpoints,kinematics,assemble
	$(VENV)/bin/deepdraw pipeline configs/demo-zoo.toml --only train,activations,rsa,tuning,report
	$(VENV)/bin/deepdraw pipeline configs/demo.toml

test: install
	$(PY) -m pytest -q

bench: install
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b --quick || exit 1; done

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: install
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
