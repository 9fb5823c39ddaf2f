# The learning half: cache -> pretrain -> transfer (target x run) -> report.
# A training job evaluates its best checkpoint and writes the run's metrics JSON itself (one process
# per run); popularity, which trains nothing, has its own rule. Run names are SETTING[@VARIANT]
# (transrec.variants): the scaling and replicate runs of study.scaling are variants of the same rules.
# GPU rules declare `resources: gpu=N` and run through `transrec gpu-run`, which gives each job its own
# devices (Snakemake does not assign GPU ids) and starts torchrun when N > 1. On a CPU machine gpu-run
# runs the command as it is. DVC runs the very same commands (dvc.yaml).

GPUS = config["train"]["gpus"]
SETTING_RUN = r"(?:scratch|finetune|frozen|zero_shot|id)(?:@[a-z0-9.\-]+)?"


rule cache:
    input:
        lambda w: transrec_study.processed_files(config, w.platform),
        f"{PKG}/train/cache.py",
    output:
        directory(f"{DATA}/cache/{{platform}}"),
    params:
        model=config["model"],
        dtype=config["train"]["cache_dtype"],
    log:
        f"{LOGS}/cache/{{platform}}.log",
    shell:
        "transrec cache {wildcards.platform} > {log} 2>&1"


rule pretrain:
    input:
        transrec_study.processed_files(config, SOURCE),
        transrec_study.cache_dir(config, SOURCE),
        f"{PKG}/train/loop.py",
    output:
        f"{RESULTS}/models/{SOURCE}/{{run}}/best.pt",
        f"{RESULTS}/models/{SOURCE}/{{run}}/train_log.json",
        f"{RESULTS}/metrics/{SOURCE}/{{run}}.json",
    wildcard_constraints:
        run=r"pretrain(?:@src[0-9.]+)?",
    params:
        model=config["model"],
        train=config["train"],
        variant=lambda w: f" --variant {w.run.partition('@')[2]}" if "@" in w.run else "",
    resources:
        gpu=GPUS,
    threads: workflow.cores
    log:
        f"{LOGS}/pretrain/{SOURCE}/{{run}}.log",
    shell:
        "transrec gpu-run --gpus {resources.gpu} -- transrec pretrain{params.variant} > {log} 2>&1"


rule transfer:
    input:
        lambda w: transrec_study.transfer_inputs(config, w.target, w.run),
        f"{PKG}/train/loop.py",
    output:
        f"{RESULTS}/models/{{target}}/{{run}}/best.pt",
        f"{RESULTS}/models/{{target}}/{{run}}/train_log.json",
        f"{RESULTS}/metrics/{{target}}/{{run}}.json",
    wildcard_constraints:
        target="|".join(TARGETS),
        run=SETTING_RUN,
    params:
        model=config["model"],
        train=config["train"],
    resources:
        gpu=GPUS,
    threads: workflow.cores
    log:
        f"{LOGS}/transfer/{{target}}/{{run}}.log",
    shell:
        "transrec gpu-run --gpus {resources.gpu} -- transrec transfer {wildcards.target} {wildcards.run} > {log} 2>&1"


rule popularity:
    input:
        lambda w: transrec_study.processed_files(config, w.platform),
        f"{PKG}/evaluate/run.py",
    output:
        f"{RESULTS}/metrics/{{platform}}/popularity.json",
    params:
        evaluate=config["evaluate"],
    log:
        f"{LOGS}/evaluate/{{platform}}/popularity.log",
    shell:
        "transrec evaluate {wildcards.platform} popularity > {log} 2>&1"


rule report:
    input:
        transrec_study.metrics_files(config),
        f"{PKG}/report/build.py",
    output:
        report(f"{RESULTS}/report/results.md", caption="../report/results.rst", category="Results"),
        f"{RESULTS}/report/results.csv",
        f"{RESULTS}/report/gains.csv",
        f"{RESULTS}/report/scaling_source.csv",
        f"{RESULTS}/report/scaling_target.csv",
        f"{RESULTS}/report/curves_source.csv",
        f"{RESULTS}/report/curves_target.csv",
        f"{RESULTS}/report/summary.json",
        report(directory(f"{RESULTS}/report/plots"), patterns=["{name}.png"], caption="../report/plots.rst",
               category="Plots"),
    log:
        f"{LOGS}/report.log",
    shell:
        "transrec report > {log} 2>&1"
