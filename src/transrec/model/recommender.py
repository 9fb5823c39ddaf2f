"""The recommender: item tower + user encoder + dot-product scoring, with a RecBole-style interface.

    calculate_loss(batch)        training loss of one batch (also `forward`, so DDP can wrap it)
    full_sort_predict(histories) scores of a batch of users against the whole catalogue
    encode_catalog()             every item's vector, once (evaluation ranks against it)

Per step, every item index the batch mentions (histories, positives, negatives) goes through the
item tower exactly once: `item_vectors` de-duplicates with torch.unique and gathers the vectors
back with the inverse index.

Batch (tensors; -1 = padding / none):
    history   [B, N]          left-padded item indices
    targets   [B, N] causal (next item at every position) | [B, P] bidirectional (next P clicks)
    negatives [B, T, K] (per_position) | [K] (shared, in_batch); absent with loss ce (every item scores)
    neg_mask  [B, K] bool, shared/in_batch only: False where the candidate is one of the user's items
    neg_logq, target_logq  [K], shape of targets (model.logq): log-probability of being a step's candidate
    loss_norm (optional, DDP) the global batch's target count / world size: the loss denominator
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from transrec.data.platform import DROPPED
from transrec.model.config import ModelConfig
from transrec.model.items import ContentTower, IdTower, ItemFeatures
from transrec.model.side import SideTower
from transrec.model.user import UserEncoder

KINDS = ("content", "id")


def item_tower(cfg: ModelConfig, image_size: int, frozen_bottoms: bool = True) -> ContentTower | SideTower:
    """A content model's item tower by model.item_tower: heads over the encoders' last features (trainable top
    blocks optional), or side adapters over every layer state of frozen encoders."""
    tower = SideTower if cfg.item_tower == "side" else ContentTower
    return tower(cfg, image_size, frozen_bottoms)


class Recommender(nn.Module):
    def __init__(self, cfg: ModelConfig, kind: str = "content", n_items: int | None = None,
                 image_size: int | None = None, frozen_bottoms: bool = True):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        self.cfg, self.kind = cfg, kind
        torch.manual_seed(cfg.init_seed)  # fresh layers start the same way for the same seed
        self.items = item_tower(cfg, image_size or 64, frozen_bottoms) if kind == "content" else IdTower(cfg, n_items)
        self.user = UserEncoder(cfg.user_encoder, cfg.d)
        self.items_frozen = False
        self._item_table: torch.Tensor | None = None  # set while the item tower is frozen

    # ---- items -------------------------------------------------------------------------------
    def attach(self, features: ItemFeatures) -> None:
        """Point the model at a platform's items (the target of a transfer, or the source)."""
        self.items.attach(features)
        self.features = features
        self._item_table = None

    def freeze_items(self) -> None:
        """Freeze the whole item tower (the `frozen` transfer setting); its vectors are then computed once."""
        self.items.requires_grad_(False)
        self.items_frozen = True
        self._item_table = None

    def item_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """Vectors for item indices of any shape (-1 = padding -> zero vector), each distinct item encoded once."""
        flat = ids.reshape(-1)
        valid = torch.nonzero(flat >= 0).squeeze(1)
        out = torch.zeros(len(flat), self.cfg.d, device=ids.device)
        if len(valid):
            if self.items_frozen:
                vec = self.frozen_table()[flat[valid]]
            else:
                uniq, inverse = torch.unique(flat[valid], return_inverse=True)
                vec = self.items(uniq).float()[inverse]
            out = out.index_put((valid,), vec)
        return out.view(*ids.shape, self.cfg.d)

    def frozen_table(self) -> torch.Tensor:
        if self._item_table is None:
            self._item_table = self.encode_catalog()
        return self._item_table

    @torch.no_grad()
    def encode_catalog(self, chunk: int = 1024) -> torch.Tensor:
        """[n_items, d]: every non-dropped item encoded once (dropped items: zeros), in eval mode."""
        was = self.training
        self.items.eval()
        modality = self.features.modality
        out = torch.zeros(len(modality), self.cfg.d, device=modality.device)
        keep = torch.nonzero(modality != DROPPED).squeeze(1)
        for start in range(0, len(keep), chunk):
            rows = keep[start:start + chunk]
            out[rows] = self.items(rows).float()
        self.items.train(was and not self.items_frozen)
        return out

    def train(self, mode: bool = True):
        super().train(mode)
        if self.items_frozen:
            self.items.eval()
        return self

    # ---- users -------------------------------------------------------------------------------
    def user_states(self, history: torch.Tensor, history_vectors: torch.Tensor | None = None) -> torch.Tensor:
        vectors = self.item_vectors(history) if history_vectors is None else history_vectors
        return self.user(vectors, history >= 0)

    def user_vectors(self, history: torch.Tensor, catalog: torch.Tensor | None = None) -> torch.Tensor:
        """[B, d]: the output at the last position. With `catalog`, history vectors are looked up in it."""
        vectors = None
        if catalog is not None:
            vectors = catalog[history.clamp(min=0)] * (history >= 0).unsqueeze(-1)
        return self.user_states(history, vectors)[:, -1]

    @torch.no_grad()
    def full_sort_predict(self, history: torch.Tensor, catalog: torch.Tensor | None = None) -> torch.Tensor:
        """[B, n_items] dot-product scores; dropped items score -inf."""
        catalog = self.encode_catalog() if catalog is None else catalog
        scores = self.user_vectors(history, catalog) @ catalog.T
        return scores.masked_fill_((self.features.modality == DROPPED)[None], float("-inf"))  # in place

    # ---- training ------------------------------------------------------------------------------
    def calculate_loss(self, batch: dict) -> torch.Tensor:
        """Mean loss over the batch's targets (-1 = no target at that position).

        ce       cross-entropy over the whole catalogue (dropped items excluded): SASRec/RecBole's loss, the
                 strongest for ID models (ML-1M NDCG@10 0.18 vs 0.13 with BCE, see README); a content model
                 then encodes every item each step.
        softmax  sampled softmax: the target against the sampled candidates (never the user's own items);
                 with model.logq each logit minus log Q(candidate), which removes the popularity bias of
                 in-batch negatives (Yi et al., RecSys'19).
        bce      TransRec's objective: the target against each negative, independently.
        """
        history, targets = batch["history"], batch["targets"]
        b, n = history.shape
        has_target = targets >= 0
        norm = batch["loss_norm"] if "loss_norm" in batch else has_target.sum().clamp(min=1)
        if self.cfg.loss == "ce":
            table = self.all_item_vectors()  # one pass over the catalogue; histories are gathered from it
            hist_v = table[history.clamp(min=0)] * (history >= 0).unsqueeze(-1)
            query = self._queries(self.user_states(history, hist_v), targets)[has_target]  # only rows with a target
            logits = (query @ table.T).float().masked_fill(self.features.modality == DROPPED, float("-inf"))
            return F.cross_entropy(logits, targets[has_target], reduction="sum") / norm

        negatives = batch["negatives"]
        ids = torch.cat([history.reshape(-1), targets.reshape(-1), negatives.reshape(-1)])
        vec = self.item_vectors(ids)  # one de-duplicated pass over everything the step touches
        hist_v, rest = vec[: b * n].view(b, n, -1), vec[b * n:]
        target_v = rest[: targets.numel()].view(*targets.shape, -1)
        neg_v = rest[targets.numel():].view(*negatives.shape, -1)
        query = self._queries(self.user_states(history, hist_v), targets)
        pos_logit = (query * target_v).sum(-1)
        if negatives.dim() == 3:  # per_position: [B, T, K]
            neg_logit = torch.einsum("btd,btkd->btk", query, neg_v)
            neg_ok = negatives >= 0
        else:  # shared / in_batch: [K], masked per user
            neg_logit = query @ neg_v.T
            neg_ok = batch["neg_mask"][:, None, :].expand(-1, query.shape[1], -1)
        if self.cfg.loss == "bce":
            neg_term = (F.softplus(neg_logit) * neg_ok).sum(-1) / neg_ok.sum(-1).clamp(min=1)
            per_position = F.softplus(-pos_logit) + neg_term
        else:
            if "neg_logq" in batch:  # sampling-bias correction, the target's logit included
                pos_logit = pos_logit - batch["target_logq"]
                neg_logit = neg_logit - batch["neg_logq"]
            logits = torch.cat([pos_logit.unsqueeze(-1), neg_logit.masked_fill(~neg_ok, float("-inf"))], dim=-1)
            per_position = -torch.log_softmax(logits.float(), dim=-1)[..., 0]
        return (per_position * has_target).sum() / norm

    def _queries(self, states: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The user vectors that predict the targets: every position (causal) or the last one (bidirectional)."""
        if self.cfg.user_encoder.mode == "causal":
            return states                                          # [B, N, d]: every position predicts the next
        return states[:, -1:].expand(-1, targets.shape[1], -1)     # [B, P, d]: the last position

    def all_item_vectors(self) -> torch.Tensor:
        """[n_items, d] with gradients (full cross-entropy): the ID table, or every rankable item encoded once."""
        if self.kind == "id":
            return self.items.table.weight
        if self.items_frozen:
            return self.frozen_table()
        modality = self.features.modality
        keep = torch.nonzero(modality != DROPPED).squeeze(1)
        return torch.zeros(len(modality), self.cfg.d, device=modality.device).index_put((keep,), self.items(keep).float())

    def forward(self, batch: dict) -> torch.Tensor:
        return self.calculate_loss(batch)

    # ---- parameter groups and checkpoints ------------------------------------------------------------
    def frozen_prefixes(self) -> list[str]:
        """State-dict key prefixes of the frozen encoder bottoms (rebuilt from pretrained weights, never saved)."""
        return [f"items.{p}" for p in self.items.frozen_prefixes()]

    def param_groups(self, lr: float, encoder_lr: float, weight_decay: float) -> list[dict]:
        encoder = {id(p) for p in self.items.encoder_top_parameters()}
        trainable = [(name, p) for name, p in self.named_parameters() if p.requires_grad]
        # LoRA adapters sit inside the encoder blocks but are new weights (B starts at zero): they learn at
        # `lr` like the heads; encoder_lr is for the pre-trained weights themselves
        enc = [p for name, p in trainable if id(p) in encoder and "lora_" not in name]
        rest = [p for name, p in trainable if id(p) not in encoder or "lora_" in name]
        groups = [{"params": rest, "lr": lr, "weight_decay": weight_decay, "name": "model"}]
        if enc:
            groups.append({"params": enc, "lr": encoder_lr, "weight_decay": weight_decay, "name": "encoder_top"})
        return groups
