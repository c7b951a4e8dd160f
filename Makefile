# Two commands on a fresh clone: `make demo` and `make test`. Each sets up .venv by itself.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deepdraw-installed

.PHONY: install lock demo test test-fast bench docs notebooks lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements/lock.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# the pinned runtime list shared with the Dockerfile, deepdraw.def and environment.yml
	# (requirements/lock.py writes it; torch's CPU wheel is cached on these machines: pip's find-links)
	$(PY) -m pip install --quiet -r requirements/lock.txt
	$(PY) -m pip install --quiet -c requirements/lock.txt -e ".[dev]"
	touch $(STAMP)

# after changing dependencies: rewrite requirements/lock.txt from the installed environment
lock:
	$(PY) requirements/lock.py

demo: install
	# the demo's dataset, then the shipped paper-scale models on its test set (configs/demo-zoo.toml),
	# then every other stage of the demo (its report links to the shipped models' report)
	$(VENV)/bin/deepdraw pipeline configs/demo.toml --only characters,startpoints,kinematics,assemble
	$(VENV)/bin/deepdraw pipeline configs/demo-zoo.toml --only train,activations,rsa,tuning,report
	$(VENV)/bin/deepdraw pipeline configs/demo.toml

test: install
	$(PY) -m pytest -q

bench: install
	# every benchmark script but current.py (the table of current figures: benchmarks/README.md)
	for b in $(filter-out benchmarks/current.py,$(wildcard benchmarks/*.py)); do echo "== $$b"; $(PY) $$b --quick || exit 1; done

# the documentation site (mkdocs.yml) -> site/index.html; --strict: a broken link or reference fails
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# execute notebooks/*.ipynb in place and store them with their outputs and key numbers (notebooks/README.md);
# run after editing a notebook or changing what it shows (tests/test_notebooks.py compares a fresh run)
notebooks: install
	$(PY) notebooks/execute.py

lint: install
	$(VENV)/bin/ruff check src tests benchmarks requirements docs/_site notebooks/execute.py
	$(VENV)/bin/ruff format --check src tests benchmarks requirements docs/_site notebooks/execute.py
	$(VENV)/bin/hadolint Dockerfile
	# type check of the package ([tool.mypy] in pyproject.toml; tests/test_typecheck.py runs it in `make test`)
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format src tests benchmarks docs/_site notebooks/execute.py
	$(VENV)/bin/ruff check --fix src tests benchmarks docs/_site notebooks/execute.py

clean:
	rm -rf $(VENV) runs .pytest_cache site
