# Two commands do all set-up on a fresh machine:
#   make run   - create the venv, install, run the default pipeline (embedded synthetic platforms)
#   make test  - create the venv if needed, install, run the test suite
# make run PARAMS=profiles/ml100k.yaml runs the real-data profile instead of params.yaml.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all
PARAMS ?= params.yaml
export PATH := $(abspath $(BIN)):$(PATH)
export TRANSREC_PARAMS := $(PARAMS)

.PHONY: run readme test venv dvc dry-run bench-data clean-outputs

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

RESULTS = $$($(BIN)/python -c "from transrec import params; print(params.read('$(PARAMS)')['paths']['results'])")

# make run also records its wall time (install excluded) in <results>/make_run.json: `transrec report
# --readme README.md` quotes it next to the table.
run: venv
	@start=$$(date +%s); \
	$(BIN)/snakemake --cores $(CORES) && \
	$(BIN)/snakemake --cores 1 --report $(RESULTS)/report.html && \
	printf '{"wall_s": %s, "cores": %s, "finished": "%s", "commit": "%s"}\n' "$$(( $$(date +%s) - start ))" \
		"$$(nproc)" "$$(date -u +%Y-%m-%dT%H:%MZ)" "$$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
		> $(RESULTS)/make_run.json && cat $(RESULTS)/make_run.json

# make readme fills the default study's block of README.md, or a profile's block (named after it) of
# docs/results.md; for the default it also draws the DAG into docs/pipeline.md: the Snakemake rule graph
# (graphviz) and DVC's stage graph (mermaid, rendered by code hosts), and `dvc metrics show` on the last run.
READMEFILE = $(if $(filter params.yaml,$(PARAMS)),README.md,docs/results.md)
readme: venv
	$(BIN)/transrec report --readme $(READMEFILE)
ifeq ($(PARAMS),params.yaml)
	$(BIN)/snakemake --rulegraph 2> /dev/null | dot -Tpng -Gdpi=80 -o docs/figures/rulegraph.png
	$(BIN)/dvc dag --md | $(BIN)/transrec readme-block dvc-dag --readme docs/pipeline.md \
		--details "dvc dag --md: every stage of the default study"
	$(BIN)/dvc metrics show | head -12 | $(BIN)/transrec readme-block dvc-metrics --readme docs/pipeline.md --code text
endif

dry-run: venv
	$(BIN)/snakemake -n

dvc: venv
	test -d .dvc || $(BIN)/dvc init --quiet
	$(BIN)/transrec dvc-yaml --params params.yaml
	$(BIN)/dvc repro

test: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/transrec dvc-yaml --check --params params.yaml
	$(BIN)/python -m pytest -q

bench-data: venv
	$(BIN)/python benchmarks/data_throughput.py

clean-outputs:
	rm -rf data results logs .snakemake
