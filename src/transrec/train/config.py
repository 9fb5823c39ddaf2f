"""The train section of params.yaml as a typed config (as the model's, transrec.model.config).

Defaults are params.yaml's (tests/test_params.py checks that they agree), so a key the schema leaves
optional means the same in code as in the file. `for_setting` applies the pre-training run's or the
SASRec-ID runs' overrides (train.pretrain, train.id).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

# Keys that decide where and how fast a run computes, not what it learns: a run resumes across them (they
# are left out of its fingerprint) and the job table does not re-run a training job when they change.
RUNTIME_KEYS = ("num_threads", "threads_per_gpu", "device", "loader_workers", "dist_timeout_min")
OVERRIDE_SECTIONS = ("pretrain", "id")


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0                 # initialisation, batch order, negatives, dropout
    lr: float = 2.0e-3            # user encoder, projections, id table
    encoder_lr: float = 1.0e-4    # the pre-trained encoders' trainable blocks
    weight_decay: float = 0.0     # decoupled (AdamW); 0 = Adam
    batch_size: int = 64          # users per step
    epochs: int = 100             # at most this many epochs (and at most max_steps steps)
    patience: int = 10            # evaluations without a better validation NDCG@10 before stopping ...
    min_steps: int = 400          # ... never before this many steps (the epoch budget stretches to reach them)
    samples: str = "windows"      # windows | prefixes | last (transrec.train.data)
    source_sampling: str = "proportional"  # proportional | balanced: across a pooled source's platforms
    max_steps: int = 0            # 0: the epochs decide
    eval_every: int = 0           # validate every this many steps; 0: at the end of every epoch
    lr_schedule: str = "constant"  # constant | cosine
    warmup_steps: int = 30        # linear warm-up
    grad_clip: float = 1.0        # max gradient norm; 0 = off
    cache: bool = True            # train from the frozen-layer cache
    cache_dtype: str = "float16"  # float16 | float32
    num_threads: int = 0          # CPU threads; 0: OMP_NUM_THREADS, else the cores (at most 8)
    threads_per_gpu: int = 4      # a training job's CPU threads per GPU it takes
    device: str = "auto"          # auto | cpu | cuda
    loader_workers: int = 0       # background batch-building processes
    compile: bool = False         # torch.compile the user encoder
    gpus: int = 1                 # GPUs per training job; > 1: torchrun (DDP)
    dist_timeout_min: float = 60  # DDP: how long ranks wait at a collective

    @classmethod
    def for_setting(cls, section: dict, setting: str) -> TrainConfig:
        """The train section with the overrides of `train.pretrain` (setting "pretrain") or `train.id`."""
        raw = {k: v for k, v in section.items() if k not in OVERRIDE_SECTIONS}
        if setting in OVERRIDE_SECTIONS:
            raw.update(section.get(setting) or {})
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})

    def to_dict(self) -> dict:
        return asdict(self)

    def learning(self) -> dict:
        """What decides the numbers a run produces (its fingerprint's share of the train section)."""
        return {k: v for k, v in self.to_dict().items() if k not in RUNTIME_KEYS}


def result_keys(section: dict) -> tuple[str, ...]:
    """The train.* params keys a training job depends on (DVC params, Snakemake's re-run trigger): those of
    `section` that are not RUNTIME_KEYS, the override sections included."""
    return tuple(f"train.{k}" for k in section if k not in RUNTIME_KEYS)
