"""The head every content encoder ends with: pooled features -> d-dim item vector."""
from __future__ import annotations

from torch import nn


def projection(width: int, d: int) -> nn.Sequential:
    """Pooled encoder features -> d: LayerNorm (text and image features live on very different scales),
    then a linear layer initialised so that item vectors start with norm ~1 (logits ~1, not ~50)."""
    linear = nn.Linear(width, d)
    nn.init.normal_(linear.weight, std=(width * d) ** -0.5)
    nn.init.zeros_(linear.bias)
    return nn.Sequential(nn.LayerNorm(width), linear)
