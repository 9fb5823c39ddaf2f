# The learning half: cache -> pretrain -> transfer (target x run) -> report.
# A training job evaluates its best checkpoint and writes the run's metrics JSON itself (one process
# per run); popularity, which trains nothing, has its own rule. Run names are SETTING[@VARIANT]
# (transrec.variants): the scaling and replicate runs of study.scaling are variants of the same rules.
# GPU jobs run through `transrec gpu-run`, which gives each job its own devices (Snakemake does not
# assign GPU ids) and starts torchrun when train.gpus > 1; on a CPU machine it runs the command as it is.

GPUS = config["train"]["gpus"]


rule cache:
    input:
        inputs_of("cache"),
    output:
        directory(transrec_jobs.job(config, "cache", platform="{platform}").outputs[0]),
    wildcard_constraints:
        platform=one_of(transrec_jobs.cache_platforms(config)),
    params:
        cmd=cmd_of("cache"),
        settings=params_of("cache"),
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/cache/{{platform}}.log",
    shell:
        "{params.cmd} > {log} 2>&1"


rule pretrain:
    input:
        inputs_of("pretrain"),
    output:
        transrec_jobs.train_outputs(config, str(SOURCE), "{run}"),
    wildcard_constraints:
        run=r"pretrain(?:@src[0-9.]+)?",
    params:
        cmd=cmd_of("pretrain"),
        settings=params_of("pretrain"),
    resources:
        gpu=GPUS,
    threads: TRAIN_THREADS
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/pretrain/{SOURCE}/{{run}}.log",
    shell:
        "{params.cmd} > {log} 2>&1"


rule transfer:
    input:
        inputs_of("transfer"),
    output:
        transrec_jobs.train_outputs(config, "{target}", "{run}"),
    wildcard_constraints:
        target=one_of(TARGETS),
        run=transrec_jobs.run_pattern(),
    params:
        cmd=cmd_of("transfer"),
        settings=params_of("transfer"),
    resources:
        gpu=GPUS,
    threads: TRAIN_THREADS
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/transfer/{{target}}/{{run}}.log",
    shell:
        "{params.cmd} > {log} 2>&1"


rule popularity:
    input:
        inputs_of("popularity"),
    output:
        data_outputs("popularity"),
    params:
        cmd=cmd_of("popularity"),
        settings=params_of("popularity"),
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/evaluate/{{platform}}/popularity.log",
    shell:
        "{params.cmd} > {log} 2>&1"


REPORT = transrec_jobs.job(config, "report")


rule report:
    input:
        inputs_of("report"),
    output:
        report(REPORT.outputs[0], caption="../report/results.rst", category="Results"),
        REPORT.outputs[1:-1],
        report(directory(REPORT.outputs[-1]), patterns=["{name}.png"], caption="../report/plots.rst",
               category="Plots"),
    params:
        cmd=cmd_of("report"),
        settings=params_of("report"),
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/report.log",
    shell:
        "{params.cmd} > {log} 2>&1"


rule export:
    input:
        inputs_of("export"),
    output:
        transrec_jobs.job(config, "export", target="{target}").outputs,
    wildcard_constraints:
        target=one_of(TARGETS),
    params:
        cmd=cmd_of("export"),
        settings=params_of("export"),
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/export/{{target}}.log",
    shell:
        "{params.cmd} > {log} 2>&1"
