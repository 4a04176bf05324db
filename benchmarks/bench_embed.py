"""Benchmark: image embedding throughput of the default backbone, pipeline vs forward pass alone.

On the bundled sample images (128 px JPEGs, resized to 224), in one process, same batch size:

* ``forward only``: the backbone's forward + L2 normalisation over tensors decoded and
  preprocessed beforehand (the ceiling for the pipeline);
* ``embed_images``: the whole pipeline (DataLoader workers decoding and resizing with Pillow,
  collate, batched inference), with the automatic worker count;
* the same forward pass without ``channels_last`` and without BatchNorm folding, and the
  pipeline with 0 / 2 workers, on ``--variant-images`` images (to keep the run short).

Forward-only and pipeline runs alternate (F P F P ... F, ``--rounds`` pipeline runs); each
pipeline run is divided by the mean of the forward runs around it and the median of those ratios
is reported, so that other processes on the machine disturb the ratio less. The table shows the
best run of each. Goal: ratio >= 0.85 (decoding is not the bottleneck).

    .venv/bin/python benchmarks/bench_embed.py [--images 256] [--batch-size 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from artsim_pipeline.core.ml.embed import auto_num_workers, available_cpus, decode_image, embed_batch, pick_device
from artsim_pipeline.resources.models import embed_image_files as embed_images
from artsim_pipeline.resources.models import load_backbone

SAMPLE_IMAGES = Path(__file__).resolve().parents[1] / "artsim_pipeline" / "sample" / "images"


def forward_only(backbone, batches: list[torch.Tensor]) -> float:
    """Images per second of forward + normalisation over pre-decoded batches."""
    n = sum(len(b) for b in batches)
    start = time.perf_counter()
    for batch in batches:
        embed_batch(backbone, batch)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variant-images", type=int, default=96, help="images for the other variants' rows")
    args = parser.parse_args()

    files = sorted(SAMPLE_IMAGES.glob("*.jpg"))[: args.images]
    items = [(p.stem, p) for p in files]
    device = pick_device()
    backbone = load_backbone("efficientnet_lite0").to(device)
    bs = args.batch_size

    start = time.perf_counter()
    tensors = [backbone.preprocess(decode_image(p.read_bytes(), backbone.preprocessor.draft_size)) for p in files]
    decode_ms = (time.perf_counter() - start) / len(files) * 1000
    batches = [torch.stack(tensors[i : i + bs]) for i in range(0, len(tensors), bs)]
    for shape in {len(b) for b in batches}:  # warm the kernels for every batch shape
        embed_batch(backbone, batches[[len(b) for b in batches].index(shape)])

    auto = auto_num_workers(device, len(items), bs)
    # forward, pipeline, forward, pipeline, ..., forward: each pipeline run is compared with the
    # mean of the forward runs either side of it, which cancels slow drifts in machine load.
    fwd = [forward_only(backbone, batches)]
    pipe = []
    for _ in range(args.rounds):
        pipe.append(embed_images(items, backbone, batch_size=bs, device=device).images_per_second)
        fwd.append(forward_only(backbone, batches))
    ratios = sorted(p / ((a + b) / 2) for p, a, b in zip(pipe, fwd, fwd[1:]))
    ratio = ratios[len(ratios) // 2] if len(ratios) % 2 else sum(ratios[len(ratios) // 2 - 1 : len(ratios) // 2 + 1]) / 2
    best_fwd, best_pipe = max(fwd), max(pipe)
    rows = [
        ("forward only (channels_last, BN folded)", best_fwd),
        (f"embed_images, auto workers ({auto})", best_pipe),
    ]
    # The other variants on fewer images (full batches), to keep the run short.
    few_items = items[: max(bs, args.variant_images // bs * bs)]
    few_batches = batches[: len(few_items) // bs]
    for workers in (0, 2):
        if workers != auto:
            result = embed_images(few_items, backbone, batch_size=bs, num_workers=workers, device=device)
            rows.append((f"embed_images, {workers} workers", result.images_per_second))
    plain = load_backbone("efficientnet_lite0", channels_last=False).to(device)
    embed_batch(plain, few_batches[0])
    rows.append(("forward only, contiguous NCHW (BN folded)", forward_only(plain, few_batches)))
    unfused = load_backbone("efficientnet_lite0", fuse_bn=False).to(device)
    embed_batch(unfused, few_batches[0])
    rows.append(("forward only, channels_last, BN not folded", forward_only(unfused, few_batches)))

    print(f"device={device} cpus={available_cpus()} torch_threads={torch.get_num_threads()} "
          f"images={len(files)} (variants: {len(few_items)}) batch_size={bs} rounds={args.rounds} "
          f"load_avg={os.getloadavg()[0]:.1f} (other processes share the CPU)")
    print(f"decode + preprocess in the main process: {decode_ms:.2f} ms/image")
    width = max(len(name) for name, _ in rows)
    print(f"{'variant':<{width}}  {'images/s':>9}  {'vs forward':>10}")
    for name, ips in rows:
        print(f"{name:<{width}}  {ips:9.1f}  {ips / best_fwd:10.2f}")
    print(f"forward-only runs: {', '.join(f'{x:.1f}' for x in fwd)} images/s; pipeline runs: {', '.join(f'{x:.1f}' for x in pipe)}")
    print(f"pipeline / forward-only ratio: {ratio:.2f} (median over {len(ratios)} bracketed runs; "
          f"best / best {best_pipe / best_fwd:.2f}; goal >= 0.85)")


if __name__ == "__main__":
    main()
