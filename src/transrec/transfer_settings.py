"""The registry of settings: every way a run of the study is produced, one record each.

A record drives everything that differs between settings: the job table and its run names (transrec.jobs),
what a run loads, freezes and trains (transrec.train.settings.transfer_spec), the schema's enums of
transfer.settings and study.scaling.settings (transrec.params.schema), the report's row order and plot
colour, and the model card's sentence. Adding a setting that combines these behaviours is one record here
(docs/adding-a-setting.md); a new behaviour is a new field, read where the behaviour lives.

No imports beyond the standard library: the CLI, the schema and the data steps read it without torch.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    name: str
    summary: str                    # the model card's sentence: how the model was obtained
    colour: str                     # the report's plots
    kind: str = "content"           # content: item encoders | id: an item-ID table (SASRec-ID)
    from_source: bool = False       # starts from the source platform's pre-trained model
    train: bool = True              # False: evaluated as loaded (trains nothing on the target)
    freeze_items: bool = False      # the pre-trained item tower stays fixed; the user encoder trains
    adapters: bool = False          # LoRA adapters on the encoders' trainable blocks (transfer.lora)
    params: tuple[str, ...] = ()    # params keys its runs depend on beyond model, train and evaluate
    transfer: bool = True           # a value of transfer.settings (pretrain and popularity are not)


# In the report's row order: the baselines, the transfer settings, then the source model.
REGISTRY: dict[str, Setting] = {s.name: s for s in (
    Setting("popularity", "items ranked by how often they occur in this platform's training sequences",
            "#9e9e9e", train=False, transfer=False),
    Setting("id", "SASRec with an item-ID table, trained on this platform", "#795548", kind="id"),
    Setting("scratch", "trained on this platform from a random initialisation", "#1f77b4"),
    Setting("finetune", "pre-trained on the source platform, then fine-tuned end to end on this platform",
            "#d62728", from_source=True),
    Setting("lora", "pre-trained on the source platform, then adapted on this platform with LoRA (weights merged)",
            "#e377c2", from_source=True, adapters=True, params=("transfer.lora",)),
    Setting("frozen", "the source platform's item tower kept; only the user encoder trained on this platform",
            "#ff7f0e", from_source=True, freeze_items=True),
    Setting("zero_shot", "the source platform's model, not trained on this platform at all", "#2ca02c",
            from_source=True, train=False),
    Setting("pretrain", "pre-trained on the source platform", "#9467bd", transfer=False),
)}


def setting(name: str) -> Setting | None:
    return REGISTRY.get(name)


def transfer_settings() -> tuple[str, ...]:
    """The values transfer.settings accepts (the runs `transrec transfer` makes)."""
    return tuple(s.name for s in REGISTRY.values() if s.transfer)


def from_source() -> tuple[str, ...]:
    """The transfer settings that start from the source model (they need study.source)."""
    return tuple(s.name for s in REGISTRY.values() if s.transfer and s.from_source)


def scalable() -> tuple[str, ...]:
    """The transfer settings a curve or a replicate may repeat: those that train on the target."""
    return tuple(s.name for s in REGISTRY.values() if s.transfer and s.train)


def evaluated() -> tuple[str, ...]:
    """Every setting `transrec evaluate` accepts, in the report's order."""
    return tuple(REGISTRY)
