"""The head every content encoder ends with: pooled features -> d-dim item vector."""
from __future__ import annotations

from torch import nn


def projection(width: int, d: int, head: str = "linear") -> nn.Sequential:
    """Pooled encoder features -> d: LayerNorm (text and image features live on very different scales),
    then a linear layer initialised so that item vectors start with norm ~1 (logits ~1, not ~50).

    head "mlp" puts a hidden layer (width 4d, GELU) before that linear layer: with frozen encoders the
    head is the only item-specific capacity the model has, and a linear map of frozen features cannot
    separate items whose titles (or posters) look alike."""
    linear = nn.Linear(width if head == "linear" else 4 * d, d)
    nn.init.normal_(linear.weight, std=(linear.in_features * d) ** -0.5)
    nn.init.zeros_(linear.bias)
    if head == "linear":
        return nn.Sequential(nn.LayerNorm(width), linear)
    return nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 4 * d), nn.GELU(), linear)
