# transrec workflow: `snakemake --cores all --resources gpu=4` (or `dvc repro`, which builds the same outputs).
# Rules live in workflow/rules/*.smk and only call `transrec <step>`; all logic is in the package.
import sys

from transrec import params as transrec_params
from transrec import study as transrec_study
from transrec.errors import TransrecError


configfile: "params.yaml"


try:  # a wrong key or type stops the run before any work, with one line
    transrec_params.validate(config, "params.yaml")
    transrec_study.check(config)
    SOURCE = transrec_study.source(config)
except TransrecError as exc:
    sys.exit(f"transrec: error: {exc}")

DATA = config["paths"]["data"]
RESULTS = config["paths"]["results"]
PLATFORMS = list(config["platforms"])
TARGETS = transrec_study.targets(config)
LOGS = "logs"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/learn.smk"


rule all:
    input:
        rules.report.output,
