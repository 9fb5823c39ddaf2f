# The learning half: cache -> pretrain -> transfer (target x setting) -> evaluate -> report.
# GPU rules declare `resources: gpu=N` and run through `transrec gpu-run`, which gives each job its own
# devices (Snakemake does not assign GPU ids) and starts torchrun when N > 1. On a CPU machine gpu-run
# runs the command as it is. DVC runs the very same commands (dvc.yaml).

GPUS = config["train"]["gpus"]


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
        f"{RESULTS}/models/{SOURCE}/pretrain/best.pt",
        f"{RESULTS}/models/{SOURCE}/pretrain/train_log.json",
    params:
        model=config["model"],
        train=config["train"],
    resources:
        gpu=GPUS,
    threads: workflow.cores
    log:
        f"{LOGS}/pretrain/{SOURCE}.log",
    shell:
        "transrec gpu-run --gpus {resources.gpu} -- transrec pretrain > {log} 2>&1"


rule transfer:
    input:
        lambda w: transrec_study.transfer_inputs(config, w.target),
        f"{PKG}/train/loop.py",
    output:
        f"{RESULTS}/models/{{target}}/{{setting}}/best.pt",
        f"{RESULTS}/models/{{target}}/{{setting}}/train_log.json",
    wildcard_constraints:
        target="|".join(TARGETS),
        setting="scratch|finetune|frozen|zero_shot|id",
    params:
        model=config["model"],
        train=config["train"],
    resources:
        gpu=GPUS,
    threads: workflow.cores
    log:
        f"{LOGS}/transfer/{{target}}/{{setting}}.log",
    shell:
        "transrec gpu-run --gpus {resources.gpu} -- transrec transfer {wildcards.target} {wildcards.setting} > {log} 2>&1"


rule evaluate:
    input:
        lambda w: transrec_study.evaluate_inputs(config, w.platform, w.setting),
        f"{PKG}/evaluate/run.py",
    output:
        f"{RESULTS}/metrics/{{platform}}/{{setting}}.json",
    params:
        evaluate=config["evaluate"],
    log:
        f"{LOGS}/evaluate/{{platform}}/{{setting}}.log",
    shell:
        "transrec evaluate {wildcards.platform} {wildcards.setting} > {log} 2>&1"


rule report:
    input:
        [f"{RESULTS}/metrics/{p}/{s}.json" for p, s in transrec_study.evaluations(config)],
        f"{PKG}/report/build.py",
    output:
        report(f"{RESULTS}/report/results.md", caption="../report/results.rst", category="Results"),
        f"{RESULTS}/report/results.csv",
        f"{RESULTS}/report/gains.csv",
        f"{RESULTS}/report/summary.json",
        report(directory(f"{RESULTS}/report/plots"), patterns=["{name}.png"], caption="../report/plots.rst",
               category="Plots"),
    log:
        f"{LOGS}/report.log",
    shell:
        "transrec report > {log} 2>&1"
