"""Run names: `<setting>[@<variant>]`, the one key of every model folder and metrics file.

A variant names a point of the study other than the main one (all data, the params' seed):
    src<f>    pre-trained on the share f of the source users (0 < f < 1)
    tgt<f>    trained on the share f of the target users (0 < f < 1); evaluated on all of them
    seed<n>   replicate n: trained with train.seed + n (and, with tgt<f>, another user subset)
joined by '-' in that order, e.g. `finetune@src0.3-seed1`. No variant = the main point, replicate 0.

Snakemake wildcards, DVC matrix items and the report all spell a run this way, so the name must be
canonical (`src0.30` is refused, with the canonical spelling); this module imports no torch.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from transrec.errors import TransrecError

TOKEN = re.compile(r"^(src|tgt|seed)(\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class Variant:
    src: float = 1.0
    tgt: float = 1.0
    seed: int = 0

    @property
    def name(self) -> str:
        parts = ([f"src{self.src:g}"] if self.src != 1.0 else []) + ([f"tgt{self.tgt:g}"] if self.tgt != 1.0 else []) \
            + ([f"seed{self.seed}"] if self.seed else [])
        return "-".join(parts)


def parse_variant(text: str) -> Variant:
    """'src0.3-seed1' -> Variant(src=0.3, seed=1); '' -> the main point. One-line error otherwise."""
    values: dict = {}
    for token in filter(None, text.split("-")):
        match = TOKEN.match(token)
        if not match:
            raise TransrecError(f"run variant '{text}': cannot read '{token}' (expected src<f>, tgt<f>, seed<n>)")
        key, value = match.groups()
        if key == "seed" and "." in value:
            raise TransrecError(f"run variant '{text}': seed must be a whole number")
        if key in values:
            raise TransrecError(f"run variant '{text}': '{key}' given twice")
        values[key] = int(value) if key == "seed" else float(value)
    for key in ("src", "tgt"):
        if key in values and not 0 < values[key] <= 1:
            raise TransrecError(f"run variant '{text}': {key} must be a share in (0, 1], got {values[key]:g}")
    variant = Variant(**values)
    if variant.name != text:
        raise TransrecError(f"run variant '{text}' is not written canonically; write '{variant.name}'")
    return variant


def split_run(run: str) -> tuple[str, Variant]:
    """'finetune@tgt0.1-seed1' -> ('finetune', Variant(tgt=0.1, seed=1))."""
    setting, _, variant = run.partition("@")
    return setting, parse_variant(variant)


def run_name(setting: str, variant: Variant | str = "") -> str:
    name = variant.name if isinstance(variant, Variant) else variant
    return f"{setting}@{name}" if name else setting
