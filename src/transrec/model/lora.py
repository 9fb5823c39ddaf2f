"""LoRA adapters (the `lora` transfer setting), through the `peft` library.

The pre-trained encoders' trainable blocks (model.*.trainable_blocks, the blocks `finetune` trains) keep
their weights fixed and get low-rank adapters instead (Hu et al., 2021): in the text encoder on the
attention's query and value projections, in the image encoder on every ungrouped convolution of those
blocks (1x1 expand/project convs of MBConv, the head conv, ResNet's convs; depthwise convs stay fixed).
What trains: the adapters, the item projections, fusion and the user encoder. The frozen bottoms and the
frozen-layer cache are the same as finetune's, so `lora` reads the same cache.

Checkpoints: the resume file keeps the adapters as they are (a killed run resumes them); the model folder
stores the merged weights (W + scale * B @ A), so a trained lora run is a plain model for evaluate, recommend and export.
"""
from __future__ import annotations

import sys

import torch
from torch import nn

from transrec.errors import TransrecError

TEXT_TARGETS = ("query", "value")  # LoRA's original choice for attention (Hu et al., 2021, section 7.1)


def _targets(model) -> list[tuple[nn.Module, list[str]]]:
    """(module list, names of the layers to adapt in it) per encoder with trainable blocks."""
    items = model.items
    found = []
    if len(items.text.top):
        names = [n for n, m in items.text.top.named_modules()
                 if isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] in TEXT_TARGETS]
        found.append((items.text.top, names))
    image = items.image
    if image.frozen_depth < image.n_units:
        top = nn.ModuleList(image.units[image.frozen_depth:])  # the same modules: adapters land in image.units
        names = [n for n, m in top.named_modules() if isinstance(m, nn.Conv2d) and m.groups == 1]
        for name in names:
            _as_plain_conv(top, name)
        found.append((top, names))
    return [(module, names) for module, names in found if names]


def _as_plain_conv(root: nn.Module, name: str) -> None:
    """peft builds an adapter with the layer's own class; EfficientNet-lite's 'same'-padding conv subclass
    cannot be built that way. Its 1x1 convs pad nothing, so a plain Conv2d with the same weights (and state
    dict keys) is the same function."""
    conv = root.get_submodule(name)
    if type(conv) is nn.Conv2d:
        return
    if tuple(conv.kernel_size) != (1, 1) or tuple(conv.stride) != (1, 1) or tuple(conv.padding) != (0, 0) \
            or isinstance(getattr(conv, "static_padding", None), nn.ZeroPad2d):
        raise TransrecError(f"lora: cannot adapt {type(conv).__name__} {name} (only plain or unpadded 1x1 convolutions)")
    plain = nn.Conv2d(conv.in_channels, conv.out_channels, 1, bias=conv.bias is not None,
                      device=conv.weight.device, dtype=conv.weight.dtype)
    plain.load_state_dict(conv.state_dict())
    plain.requires_grad_(conv.weight.requires_grad)
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, plain)


def add_adapters(model, rank: int, alpha: float, dropout: float) -> int:
    """Wrap the trainable blocks' layers in LoRA adapters; their own weights stop training. Returns the
    number of adapted layers; a model with no trainable block is one line."""
    from peft import LoraConfig, inject_adapter_in_model

    if model.kind == "content" and model.cfg.item_tower == "side":
        raise TransrecError("transfer setting lora adapts the encoders' trainable blocks; model.item_tower: side keeps "
                            "the encoders frozen and trains its own side adapters (use finetune)")
    targets = _targets(model) if model.kind == "content" else []
    if not targets:
        raise TransrecError("transfer setting lora adapts the encoders' trainable blocks, and this model has none: "
                            "set model.text_encoder.trainable_blocks or model.image_encoder.trainable_blocks >= 1")
    for module, names in targets:
        inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=names), module)
    return sum(len(names) for _, names in targets)


def adapted_layers(model: nn.Module) -> dict[str, nn.Module]:
    if "peft" not in sys.modules:  # no adapter can exist before add_adapters imported peft: no import cost
        return {}
    from peft.tuners.lora import LoraLayer

    return {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)}


def merged_state(model: nn.Module, state: dict) -> dict:
    """`state` (the model's state dict) with every adapter merged into its layer: the keys and values of
    the plain model that computes the same function."""
    layers = adapted_layers(model)
    if not layers:
        return state
    out = {}
    for key, value in state.items():
        prefix = next((p for p in layers if key.startswith(p + ".")), None)
        if prefix is None:
            out[key] = value
            continue
        rest = key[len(prefix) + 1:]
        if rest.startswith("base_layer."):
            name = rest[len("base_layer."):]
            if name == "weight":
                with torch.no_grad():
                    value = value + layers[prefix].get_delta_weight("default").to(value.device, value.dtype)
            out[f"{prefix}.{name}"] = value
        # lora_A / lora_B / dropout entries: merged above, not part of the plain model
    return out


def remove_adapters(model: nn.Module) -> None:
    """Put every adapted layer's base layer back (no merge): the model is the plain architecture again."""
    for name, layer in adapted_layers(model).items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.get_base_layer())
