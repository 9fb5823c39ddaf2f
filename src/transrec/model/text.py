"""Text item encoder: a HF BERT-family encoder, split into a frozen bottom and a trainable top.

    token ids -> embeddings -> layers[:F] (frozen, the cacheable part) -> layers[F:] (trainable, k = n - F)
              -> pooling (mean over real tokens | CLS) -> linear to d

The frozen bottom always runs in eval mode without gradients, so its output is a pure function of
the token ids: `transrec cache` stores it once per platform and training resumes from it
(`top_forward`), with the same result as running the whole encoder (`forward`).

Items are processed grouped by their real token count: every group runs at its own length with no
padding at all. Padding never influences a real token in BERT (it is masked out as a key), so this
gives the same vectors as the padded batch while skipping the padded positions' compute.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from transrec.errors import TransrecError, first_line
from transrec.model.config import TextEncoderConfig
from transrec.model.projection import projection


def load_backbone(cfg: TextEncoderConfig):
    """(AutoModel, resolved path or name). 'minilm' and local folders never touch the network."""
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    from transrec.data.text import resolve_model_path

    hf_logging.disable_progress_bar()  # one "Loading weights" bar per run is noise in every log

    path = resolve_model_path(cfg.name)
    local = cfg.name == "minilm" or Path(path).exists()
    try:
        if cfg.pretrained:
            model = AutoModel.from_pretrained(path, local_files_only=local)
        else:
            model = AutoModel.from_config(AutoConfig.from_pretrained(path, local_files_only=local))
    except (OSError, ValueError) as exc:
        first = first_line(exc)
        hint = "" if local else " (a hub name needs the network; give a local folder or 'minilm' offline)"
        raise TransrecError(f"cannot load text encoder '{cfg.name}': {first}{hint}") from None
    return model, path


def _find_layers(model) -> nn.ModuleList:
    for attr in ("encoder.layer", "encoder.layers", "layers"):
        obj = model
        for part in attr.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, nn.ModuleList) and len(obj) and hasattr(model, "embeddings"):
            return obj
    raise TransrecError(f"text encoder {type(model).__name__}: unsupported architecture "
                        "(needs BERT-style .embeddings and .encoder.layer, e.g. BERT, RoBERTa, ELECTRA, MiniLM)")


def weight_files(cfg: TextEncoderConfig) -> list[Path]:
    """The local files the pretrained weights load from ([] for a hub name or random weights)."""
    from transrec.data.text import resolve_model_path

    folder = Path(resolve_model_path(cfg.name))
    if not cfg.pretrained or not folder.is_dir():
        return []
    return sorted([*folder.glob("*.safetensors"), *folder.glob("*.bin")])


class TextEncoder(nn.Module):
    """`frozen_bottom=False`: the caller feeds the frozen bottom's output from the frozen-layer cache. With no
    trainable layer either, nothing of the backbone computes, so only its config.json is read (no
    transformers import, no weights: ~3 s less per run); `transrec cache` and uncached runs build it all."""

    def __init__(self, cfg: TextEncoderConfig, d: int, head: str | None = "linear", frozen_bottom: bool = True):
        super().__init__()
        self.cfg = cfg
        if not frozen_bottom and cfg.trainable_blocks == 0 and weight_files(cfg):
            from transrec.data.text import resolve_model_path

            config = json.loads((Path(resolve_model_path(cfg.name)) / "config.json").read_text())
            self.source, layers, n = resolve_model_path(cfg.name), [], int(config["num_hidden_layers"])
            self.hidden_size, self.embeddings = int(config["hidden_size"]), None
        else:
            with torch.random.fork_rng(devices=[]):  # loading draws nothing from the run's seed: the head starts
                backbone, self.source = load_backbone(cfg)  # the same whether the backbone is built or not
            layers = _find_layers(backbone)
            n = len(layers)
            self.hidden_size, self.embeddings = backbone.config.hidden_size, backbone.embeddings
        if not 0 <= cfg.trainable_blocks <= n:
            raise TransrecError(f"model.text_encoder.trainable_blocks: {cfg.trainable_blocks} is outside 0..{n} "
                                f"({cfg.name} has {n} layers)")
        self.n_layers = n
        self.frozen_depth = n - cfg.trainable_blocks
        self.bottom = nn.ModuleList(layers[: self.frozen_depth])
        self.top = nn.ModuleList(layers[self.frozen_depth:])
        self.pooled_width = self.hidden_size * (2 if cfg.pooling == "both" else 1)
        self.proj = projection(self.pooled_width, d, head) if head else None  # None: the side tower has its own
        for module in (self.embeddings, self.bottom):
            if module is not None:
                module.requires_grad_(False)
        self.rows_encoded = 0  # rows through `top_forward` (tests count encoder work with it)

    # The frozen part never trains: dropout off, always.
    @property
    def has_bottom(self) -> bool:
        return self.embeddings is not None

    def train(self, mode: bool = True):
        super().train(mode)
        if self.has_bottom:
            self.embeddings.eval()
        self.bottom.eval()
        return self

    @staticmethod
    def _run(layers, hidden: torch.Tensor) -> torch.Tensor:
        for layer in layers:
            out = layer(hidden, None)  # one length per group: no padding, no mask
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    @staticmethod
    def _groups(lengths: torch.Tensor):
        """(length, row indices) per distinct real length; empty texts run as length 1 ([CLS] only)."""
        lengths = lengths.clamp(min=1)
        for length in torch.unique(lengths).tolist():
            yield int(length), torch.nonzero(lengths == length).squeeze(1)

    @torch.no_grad()
    def bottom_forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Hidden states entering the first trainable layer: [n, max real length, H] (padding rows zero)."""
        if not self.has_bottom:
            raise TransrecError("the text encoder was built without its frozen bottom (it reads the frozen-layer "
                                "cache); build it with frozen_bottom=True to encode token ids")
        n, width = ids.shape[0], int(lengths.clamp(min=1).max()) if len(ids) else 1
        out = torch.zeros(n, width, self.hidden_size, device=ids.device)
        was = self.training
        self.embeddings.eval(), self.bottom.eval()
        for length, rows in self._groups(lengths):
            hidden = self.embeddings(input_ids=ids[rows, :length].long())
            out[rows, :length] = self._run(self.bottom, hidden)
        self.train(was)
        return out

    def _pool(self, h: torch.Tensor) -> torch.Tensor:
        """[n, length, H] hidden states of real tokens -> [n, pooled_width]: their mean, the first token
        ([CLS]), or both concatenated."""
        if self.cfg.pooling == "mean":
            return h.mean(1)
        if self.cfg.pooling == "cls":
            return h[:, 0]
        return torch.cat([h.mean(1), h[:, 0]], dim=1)

    def pooled(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Trainable layers + pooling from the frozen bottom's output: [n, P] (before the projection)."""
        pooled = torch.zeros(len(hidden), self.pooled_width, device=hidden.device)
        for length, rows in self._groups(lengths):
            h = self._run(self.top, hidden[rows, :length].float())
            pooled = pooled.index_put((rows,), self._pool(h).float())
        return pooled

    @torch.no_grad()
    def layer_states(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Every hidden state, pooled: [n, n_layers + 1, P] (the embeddings' output, then each layer's), the
        side tower's input (transrec.model.side). Needs the whole encoder built (a frozen bottom)."""
        if not self.has_bottom:
            raise TransrecError("the text encoder was built without its layers (it reads the layer-state cache); "
                                "build it with frozen_bottom=True to encode token ids")
        out = torch.zeros(len(ids), self.n_layers + 1, self.pooled_width, device=ids.device)
        was = self.training
        self.eval()
        for length, rows in self._groups(lengths):
            hidden = self.embeddings(input_ids=ids[rows, :length].long())
            states = [self._pool(hidden)]
            for layer in [*self.bottom, *self.top]:
                hidden = self._run([layer], hidden)
                states.append(self._pool(hidden))
            out[rows] = torch.stack(states, dim=1).float()
        self.train(was)
        return out

    def top_forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Trainable layers + pooling + projection from the frozen bottom's output: [n, d]."""
        self.rows_encoded += len(hidden)
        return self.proj(self.pooled(hidden, lengths))

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The uncached path: token ids all the way to d-dim vectors."""
        return self.top_forward(self.bottom_forward(ids, lengths), lengths)

    def frozen_prefixes(self) -> list[str]:
        return ["embeddings.", "bottom."]

    def top_parameters(self):
        return list(self.top.parameters())
