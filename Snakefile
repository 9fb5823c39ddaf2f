# transrec workflow: `snakemake --cores all --resources gpu=4` (or `dvc repro`, which builds the same outputs).
# Rules live in workflow/rules/*.smk and only call `transrec <step>`; all logic is in the package.
# Another parameter file (e.g. profiles/ml100k.yaml): TRANSREC_PARAMS=profiles/ml100k.yaml snakemake ...
# (every `transrec` command reads the same variable, so rules and commands see the same parameters).
import os
import sys

from transrec import gpu_slots as transrec_gpu_slots
from transrec import jobs as transrec_jobs
from transrec import params as transrec_params
from transrec import study as transrec_study
from transrec.errors import TransrecError


PARAMS_FILE = os.environ.get("TRANSREC_PARAMS", "params.yaml")


configfile: PARAMS_FILE


try:  # a wrong key or type stops the run before any work, with one line
    transrec_params.validate(config, PARAMS_FILE)
    transrec_study.check(config)
    SOURCE = transrec_study.source(config)
except TransrecError as exc:
    sys.exit(f"transrec: error: {exc}")

DATA = config["paths"]["data"]
RESULTS = config["paths"]["results"]
PLATFORMS = list(config["platforms"])
TARGETS = transrec_study.targets(config)
LOGS = os.path.join(os.path.dirname(os.path.normpath(RESULTS)), "logs")  # results -> logs, runs/x/results -> runs/x/logs


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/learn.smk"


rule all:
    input:
        rules.report.output,
