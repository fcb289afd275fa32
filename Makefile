# losslands: `make run` trains and probes, `make test` runs the tests. Both install first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
RUN_ARGS ?=
SWEEP ?= multirun/seed_study

.PHONY: install run test test-full lint bench bench-study study study-cpu smoke-study report clean mutants

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: install
	$(PY) -m losslands $(RUN_ARGS)

test: install
	$(PY) -m pytest -q

test-full: install
	$(PY) -m pytest -q -m ""

lint: install
	$(PY) -m ruff check src tests benchmarks

# Mutation testing ([tool.mutmut] in pyproject.toml): training/cache.py and report/tables.py
# against their tests; not part of `make test`. `$(VENV)/bin/mutmut browse` shows survivors.
mutants: install
	rm -rf mutants
	$(VENV)/bin/mutmut run --max-children 2
	$(VENV)/bin/mutmut results --all true | awk -F': ' '{print $$NF}' | sort | uniq -c

bench: install
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/curvature.py
	$(PY) benchmarks/paths.py
	$(PY) benchmarks/spectrum.py
	$(PY) benchmarks/distributed.py

bench-study: install
	$(PY) benchmarks/study.py

clean:
	rm -rf outputs .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# The whole study: 3 optimizers x 3 seeds x every probe (training shared through the cache).
study: install
	$(PY) -m losslands -m experiment=seed_study $(RUN_ARGS)

# The same grid at sizes for 2 CPU cores, ~8.5 h (sizes: conf/probe_size/cpu_*.yaml; costs: results/seed_study_cpu).
# Written to results/seed_study_cpu (committed); a rerun continues from the committed results.
study-cpu: install
	$(PY) -m losslands -m experiment=study_cpu $(RUN_ARGS)
	$(PY) -m losslands -m experiment=study_cpu_cross $(RUN_ARGS)
	$(PY) -m losslands.report results/seed_study_cpu

smoke-study: install
	$(PY) -m losslands -m experiment=smoke_study $(RUN_ARGS)

report: install
	$(PY) -m losslands.report $(SWEEP) --wandb
