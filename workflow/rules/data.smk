# The data half: download/locate -> clean -> resize + tokenize -> split, per platform.


rule download:
    input:
        f"{PKG}/data/locate.py",
        f"{PKG}/data/fetch.py",
        f"{PKG}/platforms/synthetic.py",
    output:
        f"{DATA}/raw/{{platform}}/manifest.json",
    params:
        settings=lambda w: config["platforms"][w.platform],
        world=config.get("synthetic_world", {}),
    log:
        f"{LOGS}/download/{{platform}}.log",
    shell:
        "transrec download {wildcards.platform} > {log} 2>&1"


rule clean:
    input:
        f"{DATA}/raw/{{platform}}/manifest.json",
        f"{PKG}/data/clean.py",
        f"{PKG}/platforms",
    output:
        f"{DATA}/processed/{{platform}}/interactions.parquet",
        f"{DATA}/processed/{{platform}}/items.parquet",
        f"{DATA}/processed/{{platform}}/users.parquet",
        f"{DATA}/processed/{{platform}}/quarantine.parquet",
        f"{DATA}/processed/{{platform}}/stats/clean.json",
    params:
        settings=platform_settings,
    log:
        f"{LOGS}/clean/{{platform}}.log",
    shell:
        "transrec clean {wildcards.platform} > {log} 2>&1"


rule resize:
    input:
        f"{DATA}/processed/{{platform}}/items.parquet",
        f"{PKG}/data/images.py",
    output:
        f"{DATA}/processed/{{platform}}/images.npy",
        f"{DATA}/processed/{{platform}}/image_index.parquet",
        f"{DATA}/processed/{{platform}}/stats/resize.json",
    params:
        image=lambda w: platform_settings(w)["image"],
    threads: workflow.cores
    log:
        f"{LOGS}/resize/{{platform}}.log",
    shell:
        "transrec resize {wildcards.platform} > {log} 2>&1"


rule tokenize:
    input:
        f"{DATA}/processed/{{platform}}/items.parquet",
        f"{PKG}/data/text.py",
    output:
        f"{DATA}/processed/{{platform}}/text_ids.npy",
        f"{DATA}/processed/{{platform}}/text_mask.npy",
        f"{DATA}/processed/{{platform}}/stats/tokenize.json",
    params:
        text=lambda w: platform_settings(w)["text"],
    log:
        f"{LOGS}/tokenize/{{platform}}.log",
    shell:
        "transrec tokenize {wildcards.platform} > {log} 2>&1"


rule split:
    input:
        f"{DATA}/processed/{{platform}}/interactions.parquet",
        f"{DATA}/processed/{{platform}}/items.parquet",
        f"{DATA}/processed/{{platform}}/image_index.parquet",
        f"{DATA}/processed/{{platform}}/text_ids.npy",
        f"{DATA}/processed/{{platform}}/stats/clean.json",
        f"{DATA}/processed/{{platform}}/stats/resize.json",
        f"{DATA}/processed/{{platform}}/stats/tokenize.json",
        f"{PKG}/data/split.py",
    output:
        f"{DATA}/processed/{{platform}}/split.parquet",
        f"{DATA}/processed/{{platform}}/catalog.parquet",
        f"{DATA}/processed/{{platform}}/stats/split.json",
        f"{DATA}/processed/{{platform}}/stats.json",
    log:
        f"{LOGS}/split/{{platform}}.log",
    shell:
        "transrec split {wildcards.platform} > {log} 2>&1"
