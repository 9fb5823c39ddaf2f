"""Item towers (item index -> d-dim vector) and the per-platform item inputs they read.

`ItemFeatures` holds one platform's item inputs: modality codes, token ids and real lengths, the
resized images (a memmap), and optionally the frozen-layer cache (the frozen bottoms' outputs) or the
layer-state cache (every layer's pooled state, read by transrec.model.side.SideTower).
The towers take a 1-D tensor of *distinct* item indices (the caller de-duplicates) and:

- ContentTower: sends the text items through the text encoder in one pass and the image items
  through the image encoder in one pass, then scatters both back into the caller's order with
  index_put (vectorised, no per-position loop); items with text and image are fused (sum, or
  concat + linear).
- IdTower: an embedding table (the SASRec-ID baseline). Item-specific: never transferred.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from transrec.data.platform import BOTH, IMAGE, TEXT, PlatformData
from transrec.model.config import ModelConfig
from transrec.model.image import ImageEncoder
from transrec.model.text import TextEncoder


@dataclass
class ItemFeatures:
    """One platform's item inputs, indexed by item (row = item index)."""

    modality: torch.Tensor                  # int64 [n_items]: DROPPED/TEXT/IMAGE/BOTH
    text_ids: torch.Tensor | None           # int64 [n_items, max_len]
    text_len: torch.Tensor                  # int64 [n_items]: real tokens
    image_row: torch.Tensor                 # int64 [n_items]: row in `images`, -1 = none
    images: np.ndarray | None               # uint8 [n_image_rows, S, S, 3] (memmap)
    text_cache: torch.Tensor | None = None  # [n_text_rows, T, H]: hidden states entering the first trainable layer
    text_row: torch.Tensor | None = None    # int64 [n_items]: row in text_cache, -1 = none
    image_cache: torch.Tensor | None = None  # [n_image_rows, C, h, w]: features entering the first trainable block
    text_layers: np.ndarray | None = None   # [n_text_rows, sum of widths]: every layer state, pooled (side tower)
    image_layers: np.ndarray | None = None  # [n_image_rows, sum of widths]: every unit's output, pooled (side tower)
    device: torch.device = torch.device("cpu")

    @property
    def n_items(self) -> int:
        return len(self.modality)

    @property
    def image_size(self) -> int | None:
        return None if self.images is None or self.images.ndim != 4 else int(self.images.shape[1])

    def to(self, device) -> ItemFeatures:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return ItemFeatures(move(self.modality), move(self.text_ids), move(self.text_len), move(self.image_row),
                            self.images, move(self.text_cache), move(self.text_row), move(self.image_cache),
                            self.text_layers, self.image_layers, torch.device(device))

    def pixels(self, rows: torch.Tensor) -> torch.Tensor:
        """uint8 [n, S, S, 3] for image rows (gathered from the memmap)."""
        idx = rows.cpu().numpy()
        order = np.argsort(idx, kind="stable")  # sorted reads from the memmap, then back in order
        out = np.empty((len(idx), *self.images.shape[1:]), dtype=np.uint8)
        out[order] = self.images[idx[order]]
        return torch.from_numpy(out).to(self.device, non_blocking=True)


class ContentTower(nn.Module):
    def __init__(self, cfg: ModelConfig, image_size: int, frozen_bottoms: bool = True):
        super().__init__()
        self.cfg = cfg
        self.text = TextEncoder(cfg.text_encoder, cfg.d, cfg.item_head, frozen_bottom=frozen_bottoms)
        self.image = ImageEncoder(cfg.image_encoder, cfg.d, image_size, cfg.item_head, frozen_bottom=frozen_bottoms)
        self.fuse = nn.Linear(2 * cfg.d, cfg.d) if cfg.fusion == "concat" else None
        self.features: ItemFeatures | None = None

    def attach(self, features: ItemFeatures) -> None:
        self.features = features
        self.pooled_text = self.pooled_image = None
        # A fully frozen encoder (trainable_blocks 0) gives every item the same pooled features at every
        # step: pool the cache once, so a step (and full cross-entropy over the catalogue) costs one head.
        if features.text_cache is not None and len(self.text.top) == 0:
            items = torch.nonzero(features.text_row >= 0).squeeze(1)
            lengths = torch.zeros(len(features.text_cache), dtype=torch.long, device=features.text_cache.device)
            lengths[features.text_row[items]] = features.text_len[items]
            self.pooled_text = torch.cat([self.text.pooled(features.text_cache[s:s + 4096], lengths[s:s + 4096])
                                          for s in range(0, len(lengths), 4096)] or [torch.zeros(0, self.text.hidden_size)])
        if features.image_cache is not None and self.image.frozen_depth == self.image.n_units:
            cache = features.image_cache
            self.pooled_image = torch.cat([self.image.pooled(cache[s:s + 4096]) for s in range(0, len(cache), 4096)]
                                          or [torch.zeros(0, self.image.feature_dim)])

    def encode_text(self, items: torch.Tensor) -> torch.Tensor:
        f = self.features
        lengths = f.text_len[items]
        if f.text_cache is not None:
            rows = f.text_row[items]
            if self.pooled_text is not None:
                self.text.rows_encoded += len(rows)
                return self.text.proj(self.pooled_text[rows])
            return self.text.top_forward(f.text_cache[rows], lengths)
        return self.text(f.text_ids[items], lengths)

    def encode_image(self, items: torch.Tensor) -> torch.Tensor:
        f = self.features
        rows = f.image_row[items]
        if f.image_cache is not None:
            if self.pooled_image is not None:
                self.image.rows_encoded += len(rows)
                return self.image.proj(self.pooled_image[rows])
            return self.image.top_forward(f.image_cache[rows])
        return self.image(f.pixels(rows))

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """[len(items), d] for distinct item indices: one pass per modality, scattered back in order."""
        modality = self.features.modality[items]
        n, d = len(items), self.cfg.d
        text_pos = torch.nonzero((modality == TEXT) | (modality == BOTH)).squeeze(1)
        image_pos = torch.nonzero((modality == IMAGE) | (modality == BOTH)).squeeze(1)
        zeros = torch.zeros(n, d, device=items.device)
        text_v = zeros.index_put((text_pos,), self.encode_text(items[text_pos]).float()) if len(text_pos) else zeros
        image_v = zeros.index_put((image_pos,), self.encode_image(items[image_pos]).float()) if len(image_pos) else zeros
        out = text_v + image_v  # text-only and image-only rows: their one vector; "both" rows: the sum
        if self.fuse is not None:
            both = torch.nonzero(modality == BOTH).squeeze(1)
            if len(both):
                fused = self.fuse(torch.cat([text_v[both], image_v[both]], dim=1)).float()
                out = out.index_put((both,), fused)
        return out

    def frozen_prefixes(self) -> list[str]:
        return [f"text.{p}" for p in self.text.frozen_prefixes()] + [f"image.{p}" for p in self.image.frozen_prefixes()]

    def encoder_top_parameters(self) -> list[nn.Parameter]:
        """The pre-trained encoders' trainable blocks (optimised with train.encoder_lr)."""
        return self.text.top_parameters() + self.image.top_parameters()


class IdTower(nn.Module):
    def __init__(self, cfg: ModelConfig, n_items: int):
        super().__init__()
        self.table = nn.Embedding(n_items, cfg.d)
        nn.init.normal_(self.table.weight, std=cfg.d ** -0.5)  # unit-norm vectors, like the content towers
        self.features: ItemFeatures | None = None

    def attach(self, features: ItemFeatures) -> None:
        if features.n_items != self.table.num_embeddings:
            raise ValueError(f"ID model has {self.table.num_embeddings} items, the platform {features.n_items}")
        self.features = features

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        return self.table(items)

    def frozen_prefixes(self) -> list[str]:
        return []

    def encoder_top_parameters(self) -> list[nn.Parameter]:
        return []


def item_features(data: PlatformData, cache: dict | None = None, device="cpu") -> ItemFeatures:
    """A processed platform's catalogue as model inputs (with the frozen-layer cache when given)."""
    width = int(data.text_len.max(initial=1))
    f = ItemFeatures(
        modality=torch.from_numpy(data.modality),
        text_ids=torch.from_numpy(np.ascontiguousarray(data.text_ids[:, :max(width, 1)]).astype(np.int64)),
        text_len=torch.from_numpy(data.text_len),
        image_row=torch.from_numpy(data.image_row),
        images=data.images if data.images.ndim == 4 and len(data.images) else None,
    )
    if cache is not None:  # the frozen-layer cache (heads tower) or the layer-state cache (side tower)
        f.text_row = cache["text_row"]
        f.text_cache, f.image_cache = cache.get("text"), cache.get("image")
        f.text_layers, f.image_layers = cache.get("text_layers"), cache.get("image_layers")
    return f.to(device)
