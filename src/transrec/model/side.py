"""The side-adapter item tower (model.item_tower: side): frozen encoders, a small trained network beside them.

After IISAN (Fu et al., SIGIR'24). Both encoders stay frozen; what an item contributes is every hidden state
of each, pooled to one vector per layer: MiniLM's embeddings and its 6 layers (mean over real tokens, the
first token, or both), EfficientNet-Lite0's 18 units (stem, 16 MBConv blocks, head; global average pool).
Those states are a pure function of the item, so `transrec cache` stores them once per platform (one fp16
array per modality, transrec.model.cache) and a training step never runs an encoder. The side network
reads the top `model.side.layers` states of each encoder:

    x_l   = LayerNorm(state_l)                (no affine: a fixed normalisation, computed once at attach)
    s_1   = A_1(P_1 x_1)                      P_l: Linear(width_l -> side.width), one per tapped layer
    s_l   = A_l(g_l * P_l x_l + (1 - g_l) * s_{l-1}),   g_l = sigmoid(gate_l)
    A(s)  = s + Up(Dropout(GELU(Down(LayerNorm(s)))))   a residual bottleneck adapter (side.bottleneck)
    item  = Head(s_L)                          LayerNorm + Linear to d (transrec.model.projection)

Starting point (documented because training starts there): every gate logit is 0, so g_l = 0.5 and the
stream starts as a weighted sum of the projected layer states, the top layer weighing most (1/2, then 1/4,
...); every adapter's Up is zero, so each A starts as the identity. One stream per modality; items with
text and image (modality both: TransRec's mixed items) add an inter-modal stream of the same form over the
two streams' states at aligned depths (from the top), whose head starts at zero: a "both" item starts as
the sum of its text and image vectors (the heads tower's `fusion: sum`) and learns its interaction from
there. model.fusion applies to the heads tower only.

Without a cache (train.cache: false, or new items in `transrec add-items`) the tower runs the encoders
itself (`TextEncoder.layer_states`, `ImageEncoder.layer_states`): the same states, so the same vectors.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from transrec.data.platform import BOTH, IMAGE, TEXT
from transrec.model.config import ModelConfig
from transrec.model.image import ImageEncoder
from transrec.model.projection import projection
from transrec.model.text import TextEncoder


class Adapter(nn.Module):
    """s + Up(Dropout(GELU(Down(LayerNorm(s))))), Up zero-initialised: the identity at the start."""

    def __init__(self, width: int, bottleneck: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.down = nn.Linear(width, bottleneck)
        self.up = nn.Linear(bottleneck, width)
        self.dropout = nn.Dropout(dropout)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return s + self.up(self.dropout(F.gelu(self.down(self.norm(s)))))


class SideStream(nn.Module):
    """One side stream over a list of (normalised) layer states, bottom to top: [n, L, width] states."""

    def __init__(self, widths: list[int], width: int, bottleneck: int, dropout: float):
        super().__init__()
        self.inputs = nn.ModuleList(nn.Linear(w, width) for w in widths)
        self.gates = nn.Parameter(torch.zeros(max(len(widths) - 1, 0)))  # logits: sigmoid(0) = 0.5
        self.adapters = nn.ModuleList(Adapter(width, bottleneck, dropout) for _ in widths)

    def forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        s = self.adapters[0](self.inputs[0](states[0]))
        out = [s]
        for layer in range(1, len(states)):
            g = torch.sigmoid(self.gates[layer - 1])
            s = self.adapters[layer](g * self.inputs[layer](states[layer]) + (1 - g) * s)
            out.append(s)
        return torch.stack(out, dim=1)


def _normalised(raw: torch.Tensor, widths: list[int]) -> list[torch.Tensor]:
    """[n, sum(widths)] raw pooled states -> one float32 [n, w] per layer, each LayerNorm'ed (no affine)."""
    return [F.layer_norm(part.float(), (part.shape[1],)) for part in torch.split(raw, widths, dim=1)]


class SideTower(nn.Module):
    """Item tower over the frozen encoders' layer states (see the module docstring). The same interface as
    items.ContentTower: attach(features), forward(distinct item indices) -> [n, d]."""

    def __init__(self, cfg: ModelConfig, image_size: int, frozen_bottoms: bool = True):
        super().__init__()
        self.cfg, s = cfg, cfg.side
        self.text = TextEncoder(cfg.text_encoder, cfg.d, head=None, frozen_bottom=frozen_bottoms)
        self.image = ImageEncoder(cfg.image_encoder, cfg.d, image_size, head=None, frozen_bottom=frozen_bottoms)
        # every layer state the cache holds, per modality, bottom to top; the tower reads the top `layers`
        self.text_widths = [self.text.pooled_width] * (self.text.n_layers + 1)
        self.image_widths = list(self.image.unit_widths)
        self.text_taps = self.text_widths[-s.layers:]
        self.image_taps = self.image_widths[-s.layers:]
        self.text_stream = SideStream(self.text_taps, s.width, s.bottleneck, s.dropout)
        self.image_stream = SideStream(self.image_taps, s.width, s.bottleneck, s.dropout)
        depth = min(len(self.text_taps), len(self.image_taps))
        self.inter_stream = SideStream([2 * s.width] * depth, s.width, s.bottleneck, s.dropout)
        self.text_head = projection(s.width, cfg.d)
        self.image_head = projection(s.width, cfg.d)
        self.inter_head = projection(s.width, cfg.d)
        nn.init.zeros_(self.inter_head[-1].weight)  # a "both" item starts as text + image (fusion: sum)
        self.features = None
        self.text_states = self.image_states = None

    def attach(self, features) -> None:
        """Point the tower at a platform's items. With the layer-state cache, the tapped states are sliced
        and normalised once here (float32 in memory); without, forward runs the encoders."""
        self.features = features
        self.text_states = self.image_states = None
        if features.text_layers is not None:
            self.text_states = self._from_cache(features.text_layers, self.text_widths, self.text_taps, features.device)
        if features.image_layers is not None:
            self.image_states = self._from_cache(features.image_layers, self.image_widths, self.image_taps,
                                                 features.device)

    @staticmethod
    def _from_cache(array: np.ndarray, widths: list[int], taps: list[int], device, chunk: int = 8192) -> list[torch.Tensor]:
        start = sum(widths) - sum(taps)  # the top layers are the last columns
        parts = []
        for s in range(0, len(array), chunk):
            raw = torch.from_numpy(np.array(array[s:s + chunk, start:], dtype=np.float32))
            parts.append(_normalised(raw, taps))
        if not parts:
            return [torch.zeros(0, w, device=device) for w in taps]
        return [torch.cat([p[layer] for p in parts]).to(device) for layer in range(len(taps))]

    def _text_inputs(self, items: torch.Tensor) -> list[torch.Tensor]:
        f = self.features
        if self.text_states is not None:
            rows = f.text_row[items]
            return [state[rows] for state in self.text_states]
        states = self.text.layer_states(f.text_ids[items], f.text_len[items])  # [n, L + 1, P]
        return _normalised(states[:, -len(self.text_taps):].flatten(1), self.text_taps)

    def _image_inputs(self, items: torch.Tensor) -> list[torch.Tensor]:
        f = self.features
        rows = f.image_row[items]
        if self.image_states is not None:
            return [state[rows] for state in self.image_states]
        states = self.image.layer_states(f.pixels(rows))  # [n, sum(unit widths)]
        return _normalised(states[:, sum(self.image_widths) - sum(self.image_taps):], self.image_taps)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """[len(items), d] for distinct item indices: one pass per stream, scattered back in order."""
        modality = self.features.modality[items]
        n, d = len(items), self.cfg.d
        text_pos = torch.nonzero((modality == TEXT) | (modality == BOTH)).squeeze(1)
        image_pos = torch.nonzero((modality == IMAGE) | (modality == BOTH)).squeeze(1)
        out = torch.zeros(n, d, device=items.device)
        text_s = image_s = None
        if len(text_pos):
            text_s = self.text_stream(self._text_inputs(items[text_pos]))  # [n_text, L, width]
            out = out.index_put((text_pos,), self.text_head(text_s[:, -1]).float(), accumulate=True)
        if len(image_pos):
            image_s = self.image_stream(self._image_inputs(items[image_pos]))
            out = out.index_put((image_pos,), self.image_head(image_s[:, -1]).float(), accumulate=True)
        both = torch.nonzero(modality == BOTH).squeeze(1)
        if len(both):  # rows of `both` within text_pos and image_pos: both are sorted positions
            in_text = torch.searchsorted(text_pos, both)
            in_image = torch.searchsorted(image_pos, both)
            depth = len(self.inter_stream.inputs)
            pairs = [F.layer_norm(torch.cat([text_s[in_text, -depth + j], image_s[in_image, -depth + j]], dim=1),
                                  (2 * self.cfg.side.width,)) for j in range(depth)]
            inter = self.inter_stream(pairs)
            out = out.index_put((both,), self.inter_head(inter[:, -1]).float(), accumulate=True)
        return out

    def frozen_prefixes(self) -> list[str]:
        return [f"text.{p}" for p in self.text.frozen_prefixes()] + [f"image.{p}" for p in self.image.frozen_prefixes()]

    def encoder_top_parameters(self) -> list[nn.Parameter]:
        return []  # the encoders are frozen whole; every side weight learns at train.lr
