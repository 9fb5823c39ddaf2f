# The data half: download/locate -> clean -> resize + tokenize -> split, per platform; pool when
# study.source names several platforms (their processed data as one platform for pre-training).


rule download:
    input:
        inputs_of("download"),
    output:
        data_outputs("download"),
    params:
        cmd=cmd_of("download"),
        settings=params_of("download"),
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/download/{{platform}}.log",
    shell:
        "{params.cmd} > {log} 2>&1"


rule clean:
    input:
        inputs_of("clean"),
    output:
        data_outputs("clean"),
    params:
        cmd=cmd_of("clean"),
        settings=params_of("clean"),
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/clean/{{platform}}.log",
    shell:
        "{params.cmd} > {log} 2>&1"


rule resize:
    input:
        inputs_of("resize"),
    output:
        data_outputs("resize"),
    params:
        cmd=cmd_of("resize"),
        settings=params_of("resize"),
    threads: ALL_CORES
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/resize/{{platform}}.log",
    shell:
        "{params.cmd} > {log} 2>&1"


rule tokenize:
    input:
        inputs_of("tokenize"),
    output:
        data_outputs("tokenize"),
    params:
        cmd=cmd_of("tokenize"),
        settings=params_of("tokenize"),
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/tokenize/{{platform}}.log",
    shell:
        "{params.cmd} > {log} 2>&1"


rule split:
    input:
        inputs_of("split"),
    output:
        data_outputs("split"),
    params:
        cmd=cmd_of("split"),
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/split/{{platform}}.log",
    shell:
        "{params.cmd} > {log} 2>&1"


rule pool:
    input:
        inputs_of("pool"),
    output:
        data_outputs("pool"),
    wildcard_constraints:
        platform=one_of(transrec_study.pooled(config) and [SOURCE]),
    params:
        cmd=cmd_of("pool"),
        settings=params_of("pool"),
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/pool/{{platform}}.log",
    shell:
        "{params.cmd} > {log} 2>&1"
