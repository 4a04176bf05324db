"""Batched image embedding: DataLoader workers decode and resize, the backbone runs in batches.

``embed_images(items, backbone, read=...)`` takes ``(key, source)`` pairs, where ``read(source)``
gives the image's encoded bytes (``read=None``: ``source`` *is* the bytes), and returns an
:class:`EmbedResult` with L2-normalised float32 vectors in input order (minus failures). Images
that cannot be read or decoded are recorded in ``failures`` as ``(key, reason)`` and skipped; they
never stop the run. This module opens no file: reading image files is the caller's ``read``
(``resources.models.read_image_file`` in the pipeline).

Speed notes (see ``benchmarks/bench_embed.py``):

* decoding + resizing happens in worker processes (Pillow; JPEGs are DCT-downscaled with
  ``Image.draft`` when they are at least twice the model's input size, which makes large web
  images several times cheaper to decode);
* on CUDA: ``pin_memory`` + ``non_blocking`` copies, ``torch.autocast`` in bf16 (fp16 where bf16
  is unsupported), vectors kept on the GPU until the end (no per-batch sync);
* the device is chosen by :func:`pick_device` (``cuda`` if available, else ``cpu``), never
  hard-coded.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Hashable, Sequence

import numpy as np

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from .backbones import ImageBackbone

Key = Hashable


@dataclass
class EmbedResult:
    """Vectors for the images that decoded, in input order, and the ones that did not."""

    keys: list[Key]
    vectors: np.ndarray  # float32 [len(keys), dim], rows L2-normalised
    failures: list[tuple[Key, str]] = field(default_factory=list)
    seconds: float = 0.0
    images_per_second: float = 0.0
    model_id: str = ""
    device: str = "cpu"
    batch_size: int = 0
    num_workers: int = 0

    def __len__(self) -> int:
        return len(self.keys)


def pick_device(device: "str | torch.device | None" = None) -> "torch.device":
    """``device`` if given, else ``cuda`` when available, else ``cpu``."""
    import torch

    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def auto_num_workers(device: "torch.device", n_items: int, batch_size: int) -> int:
    """Decode workers: enough to feed a GPU; on CPU the forward pass needs the cores, and one
    worker (two on machines with more than four cores) keeps ahead of it. No workers for a
    single batch, where starting processes costs more than it saves, and none inside a daemonic
    process (a Celery prefork child), which may not start children."""
    import multiprocessing

    cpus = available_cpus()
    if n_items <= batch_size or cpus < 2 or multiprocessing.current_process().daemon:
        return 0
    if device.type == "cuda":
        return max(1, min(8, cpus - 1))
    return 1 if cpus <= 4 else 2


def decode_image(data: bytes, draft_size: int | None = None, *, name: str | None = None) -> "Image.Image":
    """Decode an encoded image (JPEG, PNG, ...) fully, orient it (EXIF), as RGB.

    With ``draft_size``, a JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) that keeps
    both sides >= ``draft_size``: same result after resizing to that size, far less work.
    Raises on corrupt or truncated bytes (callers record the reason; ``name`` says where the
    bytes came from in that message).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        opened = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        where = f"{name!r}, " if name else ""
        raise UnidentifiedImageError(f"cannot identify image file ({where}{len(data)} bytes)") from None
    with opened as image:
        if draft_size and image.format == "JPEG":
            image.draft("RGB", (draft_size, draft_size))
        image.load()  # a truncated or corrupt file fails here
        ImageOps.exif_transpose(image, in_place=True)
        return image.convert("RGB") if image.mode != "RGB" else image


class ImageDataset:
    """``(key, source)`` items -> ``(key, tensor, None)`` or ``(key, None, reason)``.

    ``read(source)`` returns the encoded image; ``read=None`` means each ``source`` is already
    the bytes. Picklable when ``read`` is (a module-level function), so workers can receive it.
    """

    def __init__(
        self,
        items: Sequence[tuple[Key, Any]],
        preprocessor: Callable,
        draft_size: int | None,
        read: Callable[[Any], bytes] | None = None,
    ) -> None:
        self.items = list(items)
        self.preprocessor = preprocessor
        self.draft_size = draft_size
        self.read = read

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Key, Any, str | None]:
        key, source = self.items[index]
        try:
            data = source if self.read is None else self.read(source)
            tensor = self.preprocessor(decode_image(data, self.draft_size, name=None if self.read is None else str(source)))
        except FileNotFoundError as exc:
            return key, None, f"missing: {exc.filename or source}"
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types for broken files; recorded, not hidden
            return key, None, f"decode_error: {type(exc).__name__}: {exc}"
        return key, tensor, None


@dataclass
class Batch:
    keys: list[Key]
    pixels: "torch.Tensor | None"  # [n, 3, H, W] or None when every image in the batch failed
    failures: list[tuple[Key, str]]

    def pin_memory(self) -> "Batch":  # called by DataLoader(pin_memory=True)
        if self.pixels is not None:
            self.pixels = self.pixels.pin_memory()
        return self


def collate_drop_failures(samples: list[tuple[Key, Any, str | None]]) -> Batch:
    """Stack the images that decoded; pass the failures through as ``(key, reason)``."""
    import torch

    keys, tensors, failures = [], [], []
    for key, tensor, reason in samples:
        if reason is None:
            keys.append(key)
            tensors.append(tensor)
        else:
            failures.append((key, reason))
    if not tensors:
        return Batch([], None, failures)
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"the preprocessor produced tensors of different shapes {sorted(shapes)}; it must resize to one size")
    return Batch(keys, torch.stack(tensors), failures)


def autocast_context(device: "torch.device") -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (fp16 where bf16 is unsupported); nothing on CPU."""
    import torch

    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def embed_batch(backbone: "ImageBackbone", pixels: "torch.Tensor") -> "torch.Tensor":
    """One preprocessed batch -> L2-normalised float32 vectors on the backbone's device."""
    import torch
    import torch.nn.functional as F

    with torch.inference_mode():
        with autocast_context(backbone.device):
            features = backbone.forward(pixels.to(backbone.device, non_blocking=True))
        return F.normalize(features.float(), dim=-1)


def embed_images(
    items: Sequence[tuple[Key, Any]],
    backbone: "ImageBackbone",
    batch_size: int = 32,
    num_workers: int | None = None,
    device: "str | torch.device | None" = None,
    *,
    read: Callable[[Any], bytes] | None = None,
    progress: Callable[[int, int], None] | None = None,
    multiprocessing_context: str | None = None,
) -> EmbedResult:
    """Embed images with ``backbone`` in batches; see the module docstring.

    ``read(source) -> bytes`` is called in the decode workers (so it must be picklable with a
    spawn ``multiprocessing_context``); ``read=None`` takes each item's source as the bytes.

    ``num_workers=None`` picks :func:`auto_num_workers`. ``progress(done, total)`` is called after
    every batch. The backbone is moved to the chosen device. A vector that comes out non-finite
    or zero (e.g. an fp16 overflow) is recorded as a failure rather than stored.
    """
    import torch
    from torch.utils.data import DataLoader

    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    items = list(items)
    device = pick_device(device)
    backbone.to(device)
    workers = auto_num_workers(device, len(items), batch_size) if num_workers is None else int(num_workers)
    preprocessor = backbone.preprocessor
    dataset = ImageDataset(items, preprocessor, getattr(preprocessor, "draft_size", None), read)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_drop_failures,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers else None,
        multiprocessing_context=multiprocessing_context if workers else None,
    )
    keys: list[Key] = []
    chunks: list[torch.Tensor] = []
    failures: list[tuple[Key, str]] = []
    done = 0
    start = time.perf_counter()
    for batch in loader:
        failures.extend(batch.failures)
        done += len(batch.keys) + len(batch.failures)
        if batch.pixels is not None:
            keys.extend(batch.keys)
            chunks.append(embed_batch(backbone, batch.pixels))  # stays on the device: no sync per batch
        if progress is not None:
            progress(done, len(items))
    if chunks:
        matrix = torch.cat(chunks).cpu().numpy().astype(np.float32, copy=False)
        good = np.isfinite(matrix).all(axis=1) & (np.linalg.norm(matrix, axis=1) > 0.5)
        if not good.all():
            failures.extend((k, "embedding_error: non-finite or zero vector") for k, g in zip(keys, good) if not g)
            keys = [k for k, g in zip(keys, good) if g]
            matrix = np.ascontiguousarray(matrix[good])
    else:
        matrix = np.zeros((0, backbone.dim), dtype=np.float32)
    seconds = time.perf_counter() - start
    order = {key: i for i, (key, _) in enumerate(items)}
    failures.sort(key=lambda f: order.get(f[0], 0))
    return EmbedResult(
        keys=keys,
        vectors=matrix,
        failures=failures,
        seconds=seconds,
        images_per_second=len(keys) / seconds if seconds > 0 else 0.0,
        model_id=backbone.model_id,
        device=str(device),
        batch_size=batch_size,
        num_workers=workers,
    )
