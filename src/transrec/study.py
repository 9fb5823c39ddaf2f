"""The transfer study declared in params (`study`): which runs exist and what each one reads.

Main point: every target x transfer.settings, popularity, and the source model (`pretrain`).
Scaling (`study.scaling`, on one target; run names from transrec.variants):
    pretrain@src<f>                 for f in source_fractions
    finetune@src<f>[-seed<n>]       on the scaling target, for f in source_fractions (n in seeds)
    <s>@tgt<f>[-seed<n>]            for s in scaling.settings, f in target_fractions (n in seeds)
    <s>@seed<n>                     replicates of the main point, for s in scaling.settings
The 1.0 point of each curve is the main run (replicate 0).

transrec.jobs turns every run into a job (command, inputs, outputs) for Snakemake and dvc.yaml.
"""
from __future__ import annotations

from transrec import params as P
from transrec.errors import TransrecError
from transrec.train.settings import require_learning
from transrec.transfer_settings import from_source
from transrec.variants import Variant, run_name


def source(params: dict) -> str | None:
    """The platform pre-trained on (several named in study.source: their pool, transrec.data.pool); None for a
    study without one (only scratch and id runs)."""
    return P.source_platform(params)


def pooled(params: dict) -> list[str]:
    """The platforms pooled into the source platform; [] when study.source names one or none."""
    members = P.source_members(params)
    return members if len(members) > 1 else []


def targets(params: dict) -> list[str]:
    return list(params["study"]["targets"])


def settings(params: dict) -> list[str]:
    return list(params["transfer"]["settings"])


def source_variants(params: dict) -> list[str]:
    """Variants of pre-training: one per share of source users in study.scaling.source_fractions."""
    return [Variant(src=f).name for f in params["study"]["scaling"]["source_fractions"]]


def scaling_runs(params: dict) -> list[tuple[str, str]]:
    """(target, run) of every scaling and replicate run (see the module doc)."""
    sc = params["study"]["scaling"]
    seeds = [0, *sc["seeds"]]
    runs = [run_name("finetune", Variant(src=f, seed=n)) for f in sc["source_fractions"] for n in seeds]
    runs += [run_name(s, Variant(tgt=f, seed=n)) for s in sc["settings"] for f in sc["target_fractions"] for n in seeds]
    runs += [run_name(s, Variant(seed=n)) for s in sc["settings"] for n in sc["seeds"]]
    return [(sc["target"], r) for r in runs]


def evaluations(params: dict) -> list[tuple[str, str]]:
    """(platform, run) of every metrics file: targets x settings, popularity, the source model(s), scaling."""
    runs = [(t, s) for t in targets(params) for s in [*settings(params), "popularity"]]
    if source(params) is not None:
        runs += [(source(params), run_name("pretrain", v)) for v in ["", *source_variants(params)]]
    return runs + scaling_runs(params)


def check(params: dict) -> None:
    """The study names one source and declared targets, by their roles (and params has every section the
    study's jobs read: Snakemake and dvc-yaml stop here in one line, before the job table)."""
    require_learning(params)
    roles = {n: P.platform_config(params, n)["role"] for n in params["platforms"]}
    needs_source = set(from_source()) & set(settings(params))
    if source(params) is None:
        if needs_source or params["study"]["scaling"]["source_fractions"]:
            needs = ", ".join(sorted(needs_source)) or "study.scaling.source_fractions"
            raise TransrecError(f"params.yaml: study.source is null, but {needs} start(s) from a source model; "
                                "name a source or keep transfer.settings to scratch and id")
    for member in P.source_members(params):
        if roles.get(member) != "source":
            raise TransrecError(f"params.yaml: study.source names '{member}', which is not a platform with role: source")
    if pooled(params) and source(params) in roles:
        raise TransrecError(f"params.yaml: study.source pools {', '.join(pooled(params))} into '{source(params)}', "
                            "which is also a declared platform; rename it")
    for name in targets(params):
        if roles.get(name) != "target":
            raise TransrecError(f"params.yaml: study.targets names '{name}', which is not a platform with role: target")
    sc = params["study"]["scaling"]
    if sc["target"] not in targets(params):
        raise TransrecError(f"params.yaml: study.scaling.target '{sc['target']}' is not one of study.targets")
    needed = set(sc["settings"]) | ({"finetune"} if sc["source_fractions"] else set())
    missing = [s for s in needed if s not in settings(params)]
    if missing:
        raise TransrecError(f"params.yaml: study.scaling needs {', '.join(sorted(set(missing)))} in transfer.settings "
                            "(the main run is the 1.0 point of each curve)")
    for key in ("source_fractions", "target_fractions"):
        for f in sc[key]:
            if f"{f:g}" != repr(float(f)):  # run names spell a share with %g: Snakemake and DVC must agree
                raise TransrecError(f"params.yaml: study.scaling.{key} value {f!r}: use at most 6 significant digits")
