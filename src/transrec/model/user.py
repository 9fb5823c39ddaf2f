"""User encoder: a Transformer over the last N item vectors, nanoGPT style (pre-LN blocks).

Histories are left-padded to N, so the most recent item always sits at position N-1 and gets the
same learned position embedding; the user vector is the output at that last position.

- causal (SASRec): position i attends to positions <= i; trained on every position (next item).
- bidirectional (TransRec): every real position attends to every real position (padding mask).

A padded query position attends to itself only (so softmax never sees an empty row); its output is
never used.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from transrec.model.config import UserEncoderConfig


class SelfAttention(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.resid = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (t.view(b, n, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.resid(self.proj(y.transpose(1, 2).reshape(b, n, d)))


class Block(nn.Module):
    def __init__(self, cfg: UserEncoderConfig, d: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = SelfAttention(d, cfg.heads, cfg.dropout)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, d), nn.Dropout(cfg.dropout))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), allowed)
        return x + self.mlp(self.ln2(x))


class UserEncoder(nn.Module):
    def __init__(self, cfg: UserEncoderConfig, d: int):
        super().__init__()
        self.cfg = cfg
        self.pos = nn.Embedding(cfg.max_len, d)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, d) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(d)
        nn.init.normal_(self.pos.weight, std=0.02)

    def attention_mask(self, valid: torch.Tensor) -> torch.Tensor:
        """Boolean [B, 1, N, N]: True where query i may attend to key j."""
        n = valid.shape[1]
        allowed = valid[:, None, :].expand(-1, n, -1)
        if self.cfg.mode == "causal":
            allowed = allowed & torch.ones(n, n, dtype=torch.bool, device=valid.device).tril()
        allowed = allowed | torch.eye(n, dtype=torch.bool, device=valid.device)
        return allowed[:, None]

    def forward(self, items: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """items [B, N, d] (left-padded), valid [B, N] bool -> hidden states [B, N, d]."""
        n = items.shape[1]
        if n > self.cfg.max_len:
            raise ValueError(f"history of {n} items exceeds max_len {self.cfg.max_len}")
        pos = self.pos.weight[self.cfg.max_len - n:]  # left padding: the last slot is always position N-1
        x = self.drop(items + pos[None])
        allowed = self.attention_mask(valid)
        for block in self.blocks:
            x = block(x, allowed)
        return self.ln_f(x)
