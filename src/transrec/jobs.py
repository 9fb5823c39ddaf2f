"""The job table: every job of a study declared once, for both front ends.

A job is one `transrec` command with exactly what it reads (data files, the params keys, the package code
it runs), what it writes, and the GPUs it needs. `job(params, step, **wildcards)` builds one (the
Snakemake rules in workflow/rules/*.smk take their inputs, params, resources and command from it);
`jobs(params)` lists every job of the study in params (study.py names the runs), and `dvc_yaml(params)`
renders that list as dvc.yaml (`transrec dvc-yaml`; `--check` names the first difference from the
committed file). Steps:

    download | clean | resize | tokenize | split | cache   platform=<name>
    pool                                                   platform=<a+b+...> (study.source names several)
    export                                                 target=<name> (its finetune model's top-K)
    pretrain                                               run=pretrain[@src<f>]
    transfer                                               target=<name>, run=<setting>[@<variant>]
    popularity                                             platform=<target>
    report
Exact inputs: scratch and id read no source checkpoint (finetune, frozen and zero_shot do), id reads no
frozen-layer cache, and nothing reads the cache when train.cache is false.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from transrec import paths, study
from transrec.errors import TransrecError
from transrec.paths import (
    CATALOG,
    IMAGE_INDEX,
    IMAGES,
    INTERACTIONS,
    ITEMS,
    MANIFEST,
    QUARANTINE,
    SPLIT,
    STATS,
    TEXT_IDS,
    TEXT_MASK,
    TRAIN_LOG,
    USERS,
)
from transrec.train.config import result_keys
from transrec.transfer_settings import setting as setting_record
from transrec.transfer_settings import transfer_settings
from transrec.variants import Variant, run_name, split_run

PKG = "src/transrec"
DATA_STEPS = ("download", "clean", "resize", "tokenize", "split")

# The code a step runs, relative to src/transrec: a change there re-runs the step (and, through its
# outputs, what follows). Data steps name their modules (one package holds several steps); the learning
# steps name whole packages, so a model change re-runs training and a report change only the report.
CODE = {
    "download": ("data/locate.py", "data/fetch.py", "platforms"),
    "clean": ("data/clean.py", "platforms"),
    "resize": ("data/images.py",),
    "tokenize": ("data/text.py",),
    "split": ("data/split.py",),
    "pool": ("data/pool.py",),
    "cache": ("model", "data/platform.py"),
    "pretrain": ("model", "train", "evaluate", "data/platform.py", "runtime.py", "variants.py"),
    "transfer": ("model", "train", "evaluate", "data/platform.py", "runtime.py", "variants.py"),
    "popularity": ("evaluate", "train/evaluation.py", "model", "data/platform.py"),
    "report": ("report",),
    "export": ("export.py", "recommend.py", "model", "data/platform.py"),
}
EXPORT_K = 100  # items per user in the study's exports


def run_pattern() -> str:
    """A transfer run name, SETTING[@VARIANT] (the Snakemake wildcard's constraint)."""
    return rf"(?:{'|'.join(transfer_settings())})(?:@[a-z0-9.\-]+)?"


@dataclass(frozen=True)
class Job:
    step: str
    wildcards: tuple[tuple[str, str], ...]  # what picks this job among its step's (e.g. target, run)
    cmd: str
    inputs: tuple[str, ...]   # data files and folders it reads
    outputs: tuple[str, ...]  # what it writes (besides metrics)
    metrics: tuple[str, ...] = ()  # run metrics it writes (DVC: `metrics`, kept in git, not in the cache)
    params: tuple[str, ...] = ()   # params keys it reads (dotted)
    folders: tuple[str, ...] = ()  # which outputs are folders
    uncached: tuple[str, ...] = ()  # small outputs DVC leaves to git (cache: false): run info, the report
    gpus: int = 0

    @property
    def train(self) -> bool:
        return self.step in ("pretrain", "transfer")

    @property
    def name(self) -> str:
        """The DVC stage name (letters, digits, '-' and '_' only): step-wildcard-..., '@' and '.' -> '_'."""
        return re.sub(r"[^A-Za-z0-9_-]", "_", "-".join([self.step, *(v for _, v in self.wildcards)]))

    def code(self, root: str = PKG) -> list[str]:
        return [f"{root}/{c}" for c in CODE[self.step]]

    def code_files(self, root: str = PKG) -> list[str]:
        """The code as files (Snakemake compares a folder's own time, not its files')."""
        files = []
        for c in self.code(root):
            files += [str(p) for p in sorted(Path(c).rglob("*.py"))] if not c.endswith(".py") else [c]
        return files

    def param_values(self, params: dict) -> dict:
        return {key: _lookup(params, key) for key in self.params}


def _lookup(params: dict, key: str):
    value = params
    for part in key.split("."):
        value = value[part]
    return value


def train_params(params: dict) -> tuple[str, ...]:
    """What a training job depends on: the model, the train keys that change what it learns (not its thread
    count or device: transrec.train.config.RUNTIME_KEYS, which its fingerprint ignores too), and evaluate
    (it evaluates its best checkpoint itself)."""
    return ("model", *result_keys(params["train"]), "evaluate")


def _s(paths_: list) -> tuple[str, ...]:
    return tuple(Path(p).as_posix() for p in paths_)


def _data_job(params: dict, step: str, platform: str) -> Job:
    proc = paths.processed_dir(params, platform)
    own = f"platforms.{platform}"
    spec = {
        "download": ([], [paths.raw_dir(params, platform) / MANIFEST], [own, "synthetic_world"]),
        "clean": ([paths.raw_dir(params, platform) / MANIFEST],
                  [proc / INTERACTIONS, proc / ITEMS, proc / USERS,
                   proc / QUARANTINE, paths.step_stats(proc, "clean")], ["data", "seed", own]),
        "resize": ([proc / ITEMS], [proc / IMAGES, proc / IMAGE_INDEX, paths.step_stats(proc, "resize")],
                   ["data.image", own]),
        "tokenize": ([proc / ITEMS], [proc / TEXT_IDS, proc / TEXT_MASK, paths.step_stats(proc, "tokenize")],
                     ["data.text", own]),
        "split": ([proc / INTERACTIONS, proc / ITEMS, proc / IMAGE_INDEX,
                   proc / TEXT_IDS, *(paths.step_stats(proc, s) for s in ("clean", "resize", "tokenize"))],
                  [proc / SPLIT, proc / CATALOG, paths.step_stats(proc, "split"), proc / STATS], []),
    }
    inputs, outputs, keys = spec[step]
    keys = [k for k in keys if k != "synthetic_world" or k in params]  # only the embedded default has one
    return Job(step, (("platform", platform),), f"transrec {step} {platform}", _s(inputs), _s(outputs), params=tuple(keys))


def train_outputs(params: dict, platform: str, run: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(model files + run info, metrics file) of a training run (also with Snakemake's "{wildcard}"
    placeholders)."""
    folder = paths.run_dir(params, platform, run)
    return (_s([*paths.model_files(params, platform, run), folder / TRAIN_LOG,
                paths.run_info_file(params, platform, run)]),
            _s([paths.metrics_file(params, platform, run)]))


def _platform_inputs(params: dict, platform: str, with_cache: bool) -> list:
    """Processed data, and the frozen-layer cache when the run trains or ranks from it."""
    cache = [paths.cache_dir(params, platform)] if with_cache and params["train"]["cache"] else []
    return [*paths.processed_files(params, platform), *cache]


def job(params: dict, step: str, **wildcards: str) -> Job:
    """The job of `step` picked by its wildcards (see the module doc)."""
    gpus = int(params["train"]["gpus"])
    if step in DATA_STEPS:
        return _data_job(params, step, wildcards["platform"])
    if step == "pool":  # the source platforms' processed data as one platform (transrec.data.pool)
        p, proc = wildcards["platform"], paths.processed_dir(params, wildcards["platform"])
        inputs = [f for m in study.pooled(params)
                  for f in (*paths.processed_files(params, m), paths.step_stats(paths.processed_dir(params, m), "tokenize"))]
        outputs = [*paths.processed_files(params, p), *(paths.step_stats(proc, s) for s in ("pool", "tokenize")), proc / STATS]
        return Job(step, (("platform", p),), "transrec pool", _s(inputs), _s(outputs), params=("study.source",))
    if step == "cache":
        p = wildcards["platform"]
        return Job(step, (("platform", p),), f"transrec cache {p}", _s(paths.processed_files(params, p)),
                   _s([paths.cache_dir(params, p)]), params=("model", "train.cache_dtype"),
                   folders=_s([paths.cache_dir(params, p)]))
    if step == "pretrain":
        run, source = wildcards["run"], study.source(params)
        variant = run.partition("@")[2]
        outputs, metrics = train_outputs(params, source, run)
        return Job(step, (("run", run),), f"transrec gpu-run --gpus {gpus} -- transrec pretrain"
                   + (f" --variant {variant}" if variant else ""), _s(_platform_inputs(params, source, True)),
                   outputs, metrics, train_params(params), uncached=outputs[-1:], gpus=gpus)
    if step == "transfer":
        target, run = wildcards["target"], wildcards["run"]
        setting, point = split_run(run)
        record = setting_record(setting)
        if record is None or not record.transfer:
            raise TransrecError(f"{target}/{run}: unknown transfer setting '{setting}'; expected one of "
                                f"{', '.join(transfer_settings())}")
        inputs = _platform_inputs(params, target, record.kind == "content")
        if record.from_source:
            if study.source(params) is None:
                raise TransrecError(f"{target}/{run}: {setting} starts from a source model, but study.source is null")
            inputs += paths.model_files(params, study.source(params), run_name("pretrain", Variant(src=point.src)))
        outputs, metrics = train_outputs(params, target, run)
        return Job(step, (("target", target), ("run", run)),
                   f"transrec gpu-run --gpus {gpus} -- transrec transfer {target} {run}", _s(inputs), outputs,
                   metrics, train_params(params) + record.params, uncached=outputs[-1:],
                   gpus=gpus)
    if step == "popularity":
        p = wildcards["platform"]
        info = _s([paths.run_info_file(params, p, "popularity")])
        return Job(step, (("platform", p),), f"transrec evaluate {p} popularity", _s(paths.processed_files(params, p)),
                   info, _s([paths.metrics_file(params, p, "popularity")]), ("evaluate",), uncached=info)
    if step == "export":  # the finetune model of a target: every user's top-K
        target = wildcards["target"]
        model = paths.model_files(params, target, "finetune")
        return Job(step, (("target", target),),
                   f"transrec export --model {model[0].parent.as_posix()} --platform {target} --k {EXPORT_K}",
                   _s([*model, *_platform_inputs(params, target, True)]),
                   _s([paths.recommendations_file(params, target, "finetune")]), params=("evaluate.chunk_users",))
    if step == "report":
        out = paths.report_dir(params)
        inputs = [paths.metrics_file(params, p, r) for p, r in study.evaluations(params)]
        inputs += [paths.run_info_file(params, p, r) for p, r in study.evaluations(params)]  # ranks: intervals
        inputs += [paths.run_dir(params, p, r) / TRAIN_LOG for p, r in study.evaluations(params)
                   if r != "popularity"]  # the validation curves
        outputs = _s([*(out / f for f in paths.REPORT_FILES), out / paths.PLOTS])
        return Job(step, (), "transrec report", _s(inputs), outputs, (), ("study",), folders=outputs[-1:],
                   uncached=outputs)
    raise TransrecError(f"no job step '{step}'")


def jobs(params: dict) -> list[Job]:
    """Every job of the study in params, in DAG order."""
    out = [job(params, step, platform=p) for step in DATA_STEPS for p in params["platforms"]]
    out += [job(params, "pool", platform=study.source(params))] if study.pooled(params) else []
    out += [job(params, "cache", platform=p) for p in cache_platforms(params)]
    for platform, run in study.evaluations(params):
        step = ("pretrain" if platform == study.source(params) and run.startswith("pretrain")
                else "popularity" if run == "popularity" else "transfer")
        out.append(job(params, step, **({"run": run} if step == "pretrain" else {"platform": platform}
                                        if step == "popularity" else {"target": platform, "run": run})))
    out.append(job(params, "report"))
    out += export_jobs(params)
    names = [j.name for j in out]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise TransrecError(f"two jobs share the DVC stage name {clash[0]}: rename a platform")
    return out


def cache_platforms(params: dict) -> list[str]:
    """The platforms whose frozen-layer cache a run reads: the declared ones, with pooled sources replaced by
    their pool (nothing trains on a pool member alone)."""
    members = study.pooled(params)
    return [p for p in params["platforms"] if p not in members] + ([study.source(params)] if members else [])


def check(params: dict) -> list[Job]:
    """Everything a study's params must pass before any job runs (`transrec validate`, the Snakefile,
    `transrec dvc-yaml`): the study's platforms and roles, the sources' locations, and a job table that can
    be built. Every problem is one line."""
    from transrec.data.locate import check_sources

    study.check(params)
    check_sources(params)
    return jobs(params)


def export_jobs(params: dict) -> list[Job]:
    """Each target's finetune model exported (when the study trains finetune)."""
    if "finetune" not in study.settings(params):
        return []
    return [job(params, "export", target=t) for t in study.targets(params)]


def train_threads(params: dict, gpus_present: int) -> int | None:
    """CPU threads of a training job: train.num_threads if set; on a machine with GPUs
    train.threads_per_gpu per GPU the job takes, so a 4-GPU node runs 4 one-GPU jobs at once; on a CPU
    machine None = all the cores the workflow has."""
    t = params["train"]
    if t["num_threads"] > 0:
        return int(t["num_threads"])
    if gpus_present > 0 and t["gpus"] > 0:
        return int(t["threads_per_gpu"]) * int(t["gpus"])
    return None


# ---- dvc.yaml ---------------------------------------------------------------------------------------
HEADER = """\
# GENERATED by `transrec dvc-yaml` from the job table (src/transrec/jobs.py) and params.yaml: do not
# edit. After changing the study in params.yaml (platforms, targets, settings, scaling), run
# `transrec dvc-yaml` (`make dvc` does); `transrec dvc-yaml --check` fails when this file is stale.
# The Snakemake rules (workflow/rules/*.smk) take their jobs from the same table.
"""


def _stage(j: Job) -> dict:
    stage: dict = {"cmd": j.cmd, "deps": [*j.inputs, *j.code()]}
    if j.params:
        stage["params"] = list(j.params)
    if j.outputs:
        stage["outs"] = [{o: {"cache": False}} if o in j.uncached else o for o in j.outputs]
    if j.metrics:
        stage["metrics"] = [{m: {"cache": False}} for m in j.metrics]
    return stage


def dvc_yaml(params: dict) -> str:
    import yaml

    stages = {j.name: _stage(j) for j in jobs(params)}
    report = paths.report_dir(params).as_posix()
    scaling = params["study"]["scaling"]
    plots = [  # `dvc plots show`: the scaling curves of study.scaling.target
        {f"{report}/curves_source.csv": {"x": "fraction", "y": ["finetune"],
                                         "title": "NDCG@10 vs share of source users (pre-training)"}},
        {f"{report}/curves_target.csv": {"x": "fraction", "y": list(scaling["settings"]),
                                         "title": "NDCG@10 vs share of target users (training)"}},
    ]
    body = yaml.safe_dump({"stages": stages, "plots": plots}, sort_keys=False, width=200)
    return HEADER + body


def check_dvc_yaml(params: dict, path: Path) -> str | None:
    """None when `path` holds what dvc_yaml(params) writes, else where the first difference is."""
    want = dvc_yaml(params).splitlines()
    if not path.is_file():
        return f"{path} does not exist"
    have = path.read_text().splitlines()
    for i, (a, b) in enumerate(zip(have, want)):
        if a != b:
            return f"{path} line {i + 1}: has {a.strip()!r}, the job table writes {b.strip()!r}"
    if len(have) != len(want):
        extra = have[len(want)] if len(have) > len(want) else want[len(have)]
        return f"{path} line {min(len(have), len(want)) + 1}: {'extra' if len(have) > len(want) else 'missing'} {extra.strip()!r}"
    return None
