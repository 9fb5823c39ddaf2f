"""Which run is which: the source platform, the transfer settings, and where each run writes.

    transrec pretrain [--variant V]     -> {paths.results}/models/<source>/pretrain[@V]/
    transrec transfer TARGET RUN        -> {paths.results}/models/<target>/<RUN>/   (RUN = SETTING[@VARIANT])

Variants (transrec.variants) are the study's other points: src<f> pre-trains on a share of the source
users (and finetune/frozen/zero_shot@src<f> start from that model), tgt<f> trains on a share of the
target users, seed<n> is a replicate.

Settings (each a separate run with its own metrics) are records of transrec.transfer_settings.REGISTRY:
    scratch    the content model trained on the target only (no source pre-training)
    finetune   load the source checkpoint, keep training on the target (same freezing)
    lora       load the source checkpoint; the encoders' trainable blocks stay fixed and train LoRA adapters
               instead (transrec.model.lora, transfer.lora); needs trainable_blocks >= 1 somewhere
    frozen     load the source checkpoint; its item encoders are frozen, the user encoder trains
    zero_shot  no target training: the source model encodes the target's items and ranks
    id         SASRec-ID (item-ID embeddings) trained on the target
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from transrec import params as P
from transrec.errors import TransrecError
from transrec.paths import MODEL_CONFIG, model_dir, run_dir
from transrec.transfer_settings import from_source, setting, transfer_settings
from transrec.variants import Variant, run_name, split_run

# No torch here: the CLI reads the settings to build its parser, and a data step must not pay for importing torch.


@dataclass
class RunSpec:
    """One training run: which platform, which setting, where it writes, what it starts from."""

    platform: str
    setting: str                    # pretrain | scratch | finetune | lora | frozen | zero_shot | id
    out_dir: Path
    variant: Variant = Variant()    # the study point: share of users trained on, replicate
    kind: str = "content"           # content | id
    init_from: Path | None = None   # a model folder to start from (the source's)
    freeze_items: bool = False      # the `frozen` setting: pre-trained item tower fixed
    adapters: bool = False          # the `lora` setting: LoRA adapters on the encoders' trainable blocks
    train: bool = True              # False: zero_shot (no target training)
    job_type: str = "transfer"
    tags: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return run_name(self.setting, self.variant)

    @property
    def user_fraction(self) -> float:
        """Share of this platform's users whose sequences are trained on."""
        return self.variant.src if self.setting == "pretrain" else self.variant.tgt


def require_source(params: dict) -> str:
    """The platform pre-training reads (study.source, or the pool of the platforms it names)."""
    source = P.source_platform(params)
    if source is None:
        raise TransrecError("pre-training needs study.source: the platform (or platforms) to pre-train on")
    return source


def pretrain_spec(params: dict, variant: str = "") -> RunSpec:
    source = require_source(params)
    _, point = split_run(run_name("pretrain", variant))
    if point.tgt != 1.0 or point.seed:
        raise TransrecError(f"pre-training variant '{variant}': only src<f> applies to pre-training")
    return RunSpec(source, "pretrain", run_dir(params, source, run_name("pretrain", point)), variant=point,
                   job_type="pretrain", tags=[point.name] if point.name else [])


def transfer_spec(params: dict, target: str, run: str) -> RunSpec:
    name, point = split_run(run)
    record = setting(name)
    if record is None or not record.transfer:
        raise TransrecError(f"unknown transfer setting '{name}'; expected one of {', '.join(transfer_settings())}")
    if P.platform_config(params, target)["role"] == "source":  # an unknown platform -> one line
        raise TransrecError(f"{target} is the source platform; transfer goes to a platform with role: target")
    if point.src != 1.0 and not record.from_source:
        raise TransrecError(f"run '{run}': src<f> only applies to settings that start from the source model "
                            f"({', '.join(from_source())})")
    if not record.train and (point.tgt != 1.0 or point.seed):
        raise TransrecError(f"run '{run}': {name} trains nothing on the target; only src<f> applies")
    pretrained = None
    if record.from_source:  # scratch and id never read a source model (a study may have no source at all)
        source_run = run_name("pretrain", Variant(src=point.src))
        pretrained = model_dir(params, require_source(params), source_run)
        if not (pretrained / MODEL_CONFIG).is_file():
            how = "transrec pretrain" + (f" --variant {Variant(src=point.src).name}" if point.src != 1.0 else "")
            raise TransrecError(f"{pretrained} not found: run `{how}` first")
    return RunSpec(target, name, run_dir(params, target, run_name(name, point)), variant=point, kind=record.kind,
                   init_from=pretrained, freeze_items=record.freeze_items, adapters=record.adapters,
                   train=record.train, job_type="transfer", tags=[point.name] if point.name else [])


LEARNING_SECTIONS = ("model", "train", "transfer", "evaluate", "wandb", "study")


def require_learning(params: dict) -> dict:
    """The learning steps need every learning section; name the missing ones in one line."""
    missing = [s for s in LEARNING_SECTIONS if s not in params]
    if missing:
        raise TransrecError(f"params: no {', '.join(missing)} section{'s' if len(missing) > 1 else ''}; the learning "
                            "steps need them (copy them from the project's params.yaml)")
    return params
