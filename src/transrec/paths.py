"""Where every file of a study lives: the one home of the folder layout (paths.data, paths.results).

    <data>/raw/<platform>/manifest.json          download
    <data>/processed/<platform>/...              clean, resize, tokenize, split (PROCESSED: what training reads)
    <data>/cache/<platform>/                     cache (the frozen encoder layers' outputs)
    <results>/models/<platform>/<run>/           model/ (the model folder), resume.safetensors, train_log.json
    <results>/models/<platform>/<run>/model/     model.safetensors, config.json, README.md (transrec.model.checkpoint)
    <results>/metrics/<platform>/<run>.json      one per evaluated run: test and valid metrics only (DVC metrics)
    <results>/run_info/<platform>/<run>.json     the same run's counts, protocol, checkpoint, W&B folder, cold-item
                                                 split and per-user test ranks (transrec.evaluate.per_user)
    <results>/recommendations/<platform>/<run>.parquet   transrec export: every user's top-K
    <results>/report/                            tables, plots, summary.json
Every step, the job table (transrec.jobs) and so both front ends build paths here.
"""
from __future__ import annotations

from pathlib import Path

MANIFEST = "manifest.json"  # download: where a platform's raw files are and their fingerprint
# a processed platform: clean -> interactions, items, users, quarantine; resize -> images, image index;
# tokenize -> text ids and masks; split -> split, catalogue, stats (each step also writes stats/<step>.json)
INTERACTIONS, ITEMS, USERS, QUARANTINE = "interactions.parquet", "items.parquet", "users.parquet", "quarantine.parquet"
IMAGES, IMAGE_INDEX, TEXT_IDS, TEXT_MASK = "images.npy", "image_index.parquet", "text_ids.npy", "text_mask.npy"
SPLIT, CATALOG, STATS, STEP_STATS = "split.parquet", "catalog.parquet", "stats.json", "stats"
PROCESSED = (SPLIT, CATALOG, TEXT_IDS, TEXT_MASK, IMAGES)  # what training and evaluation read
# the cache of a platform (transrec.model.cache): metadata last, pooled features or every layer's states
CACHE_META, CACHE_TEXT, CACHE_IMAGE = "cache.json", "text.npy", "image.npy"
CACHE_LAYERS_TEXT, CACHE_LAYERS_IMAGE = "layers_text.npy", "layers_image.npy"
# a run
MODEL_DIR, MODEL_WEIGHTS, MODEL_CONFIG, MODEL_CARD = "model", "model.safetensors", "config.json", "README.md"
RESUME = "resume.safetensors"  # a run's position, optimizer and RNG state (transrec.train.loop)
TRAIN_LOG = "train_log.json"   # a run's evaluations, best step, load report, timings
# the report (transrec.report.build), in <results>/report/; scaling_<axis> and curves_<axis> per axis
RESULTS_MD, RESULTS_CSV, GAINS_CSV, SUMMARY, PLOTS = "results.md", "results.csv", "gains.csv", "summary.json", "plots"
SCALING_AXES = ("source", "target")
REPORT_FILES = (RESULTS_MD, RESULTS_CSV, GAINS_CSV, *(f"scaling_{a}.csv" for a in SCALING_AXES),
                *(f"curves_{a}.csv" for a in SCALING_AXES), SUMMARY)
MAKE_RUN = "make_run.json"     # <results>/: the wall time of the last `make run` (the Makefile writes it)


def raw_dir(params: dict, platform: str) -> Path:
    return Path(params["paths"]["data"]) / "raw" / platform


def processed_dir(params: dict, platform: str) -> Path:
    return Path(params["paths"]["data"]) / "processed" / platform


def platform_dirs(params: dict, platform: str) -> tuple[Path, Path]:
    """(raw folder, processed folder) of a platform."""
    return raw_dir(params, platform), processed_dir(params, platform)


def processed_files(params: dict, platform: str) -> list[Path]:
    """What training and evaluation read of a platform's processed data."""
    return [processed_dir(params, platform) / name for name in PROCESSED]


def step_stats(proc: Path, step: str) -> Path:
    """stats/<step>.json of a processed platform: what one data step read, kept and dropped."""
    return Path(proc) / STEP_STATS / f"{step}.json"


def cache_dir(params: dict, platform: str) -> Path:
    return Path(params["paths"]["data"]) / "cache" / platform


def run_dir(params: dict, platform: str, run: str) -> Path:
    return Path(params["paths"]["results"]) / "models" / platform / run


def model_dir(params: dict, platform: str, run: str) -> Path:
    """A run's model folder (what evaluate, recommend, export and transfer read)."""
    return run_dir(params, platform, run) / MODEL_DIR


def model_files(params: dict, platform: str, run: str) -> list[Path]:
    folder = model_dir(params, platform, run)
    return [folder / MODEL_WEIGHTS, folder / MODEL_CONFIG, folder / MODEL_CARD]


def metrics_file(params: dict, platform: str, run: str) -> Path:
    return Path(params["paths"]["results"]) / "metrics" / platform / f"{run}.json"


def run_info_file(params: dict, platform: str, run: str) -> Path:
    """What a run's metrics file does not hold: counts, protocol, checkpoint, W&B folder, the cold-item split and
    every test user's rank (not a DVC metric)."""
    return Path(params["paths"]["results"]) / "run_info" / platform / f"{run}.json"


def recommendations_file(params: dict, platform: str, run: str) -> Path:
    """`transrec export`: every user's top-K of a run's model on a platform."""
    return Path(params["paths"]["results"]) / "recommendations" / platform / f"{run}.parquet"


def report_dir(params: dict) -> Path:
    return Path(params["paths"]["results"]) / "report"
