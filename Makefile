# Each target sets up .venv when it is missing (or when pyproject.toml changed), then does its job.
# EXTRAS=dev,spark adds PySpark (the Spark equality tests run then; CI does this).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
EXTRAS ?= dev
READY  := $(VENV)/.pco-installed-$(EXTRAS)
SAMPLE := data/sample/truth.json

.PHONY: report test lab bench bench-readme sample clean-venv

$(READY): pyproject.toml
	@test -x $(BIN)/python || { echo "Creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]'
	$(BIN)/python -m ipykernel install --sys-prefix --name pco --display-name "Python (pco)" >/dev/null
	@touch $(READY)

$(SAMPLE): | $(READY)
	$(BIN)/pco data sample --out data/sample --if-missing

sample: $(SAMPLE)

report: $(READY) $(SAMPLE)
	$(BIN)/pco run-all --schedule reports/schedule.yml --out reports --jobs 2
	@echo "Open $(CURDIR)/reports/index.html"

test: $(READY) $(SAMPLE)
	$(BIN)/python -m pytest -n auto --dist loadfile

lab: $(READY) $(SAMPLE)
	$(BIN)/jupyter lab notebooks/

# PCO_BENCH_SIZES=100000,1000000 (customers; default 200000). Writes tests/benchmarks/results/bench.md and
# copies it into the README's Benchmarks section. The lifetimes peer gets a virtualenv of its own
# (~/.cache/pco-bench/lifetimes-venv), created on the first run.
bench: $(READY)
	$(BIN)/python -m pytest tests/benchmarks -m bench -p no:cacheprovider -s
	$(BIN)/python tests/benchmarks/readme_table.py

bench-readme:
	$(BIN)/python tests/benchmarks/readme_table.py

clean-venv:
	rm -rf $(VENV)
