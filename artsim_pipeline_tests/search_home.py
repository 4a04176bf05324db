"""A tiny home for the search tests: works with subjects, stand-in images, a tiny CLIP backbone,
real all-MiniLM-L6-v2 text vectors, an ann_index, and the `search_index` asset materialised
through Dagster over them (so the tests exercise what `make run` builds)."""

from __future__ import annotations

import io
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import polars as pl

from artsim_pipeline.resources import artefacts

EVIL = "<script>alert(1)</script>"


def save_tiny_clip(path: Path, seed: int = 0) -> Path:
    """A tiny CLIP (both towers, projection 16) with a byte-level tokenizer, saved like a hub
    model so that it loads through `from_pretrained(path)`."""
    import torch
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    alphabet = sorted(ByteLevel.alphabet())
    for suffix in ("", "</w>"):
        for c in alphabet:
            vocab[c + suffix] = len(vocab)
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(path)
    torch.manual_seed(seed)
    tiny = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    config = CLIPConfig(
        text_config=dict(tiny, vocab_size=len(vocab), bos_token_id=0, eos_token_id=1, pad_token_id=1, max_position_embeddings=64),
        vision_config=dict(tiny, image_size=32, patch_size=8),
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def _row(artwork_id, title, artists, classification, tags, begin, end, culture=None, object_type=None, medium=None):
    source, source_id = artwork_id.split(":", 1)
    return dict(artwork_id=artwork_id, source=source, source_id=source_id, title=title, artists=artists,
                classification=classification, object_type=object_type, medium=medium, culture=culture, tags=tags,
                date_begin=begin, date_end=end, date_text=None if begin is None else str(begin), department=None,
                landing_url=f"https://example.org/{source_id}")


def search_works() -> list[dict]:
    """Works whose subjects the paraphrase tests aim at (none has the word "feline" or "infant")."""
    return [
        _row("met:1", "Wheat Field with Cypresses", ["Vincent van Gogh"], "Paintings", ["Landscapes", "Cypresses"], 1889, 1889),
        _row("met:2", "Irises", ["Vincent van Gogh"], "Paintings", ["Flowers"], 1890, 1890),
        _row("met:3", EVIL, ["<b>Evil</b> & Co"], "Vases", [], -530, -520, culture="Attic"),
        _row("met:10", "Lion Attacking a Horse", ["George Stubbs"], "Paintings", ["Lions", "Horses"], 1762, 1768),
        _row("met:11", "Sleeping Cat", ["Gottfried Mind"], "Drawings", ["Cats"], 1800, 1800),
        _row("met:12", "Ewer with Elephant Handles", [], "Ceramics", ["Elephants"], 1700, 1720, culture="Chinese", object_type="Ewer"),
        _row("met:13", "The Virgin and Child", ["Gerard David"], "Paintings", ["Madonna and Child", "Virgin Mary"], 1500, 1510),
        _row("met:14", "Battle of the Nudes", ["Antonio Pollaiuolo"], "Prints", ["Battles", "Male Nudes"], 1470, 1475),
        _row("met:15", "Portrait of a Woman", ["Rembrandt van Rijn"], "Paintings", ["Portraits", "Women"], 1632, 1632),
        _row("met:16", "Tiger in a Thicket", [], "Drawings", ["Tigers"], 1850, 1860),
        _row("smk:KMS1", "Interiør, Strandgade 30", ["Vilhelm Hammershøi"], "maleri", ["Interiors"], 1901, 1901, culture="Danish",
             object_type="Maleri"),
        _row("smk:KKSgb6775/3", "Landskab med cypresser", ["Vincent van Gogh"], "tegning", ["Cypresses"], 1880, 1889, culture="Danish"),
        _row("smk:KMS20", "Løve", ["J.Th. Lundbye"], "maleri", ["Lions"], 1840, 1840, culture="Danish"),
        _row("smk:KMS21", "Madonna med barnet", [], "maleri", ["Madonna and Child"], 1480, 1490),
        _row("smk:KMS22", "Study of clouds", [], "tegning", ["Sky"], None, None, culture="Danish"),
    ]


def stand_in_png(i: int) -> bytes:
    """A small distinct picture per work: stripes of a colour and a width of its own."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (48, 40), ((40 * i) % 256, (90 + 25 * i) % 256, (200 - 13 * i) % 256))
    draw = ImageDraw.Draw(img)
    for x in range(0, 48, 3 + i % 5):
        draw.line([x, 0, x + 10, 40], fill=((255 - 17 * i) % 256, 30, (60 * i) % 256), width=1 + i % 3)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@contextmanager
def _environ(**values: str):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


#: the tiny CLIP's weights are random, so its picture ranking is noise: off unless a test asks
QUIET_PICTURES = {"image_weight": 0.0}


def build_search_home(home: Path, clip_dir: Path, search_config: dict | None = None) -> dict:
    """Everything `artsim serve` and `artsim search` read, under `home`; returns facts about it.
    `search_config` is the `search_index` asset's run config (default: the picture ranking off)."""
    import hashlib

    import torch
    from dagster import AssetKey, materialize

    from artsim_pipeline.core.ann import build_index
    from artsim_pipeline.resources.models import load_backbone
    from artsim_pipeline.core.ml.text import TEXT_MODEL_ID, artwork_text
    from artsim_pipeline.resources.models import embed_texts
    from artsim_pipeline.defs.partitions import sha_bucket
    from artsim_pipeline.definitions import build_defs
    from artsim_pipeline.resources.encoders import EncoderResource

    home = Path(home)
    rows = search_works()
    images = {}
    for i, row in enumerate(rows):
        data = stand_in_png(i)
        sha = hashlib.sha256(data).hexdigest()
        (home / "images" / sha[:2]).mkdir(parents=True, exist_ok=True)
        (home / "images" / sha[:2] / f"{sha}.png").write_bytes(data)
        row["image_sha256"] = sha
        images[row["artwork_id"]] = data
    frame = pl.DataFrame(rows, schema_overrides={"date_begin": pl.Int32, "date_end": pl.Int32, "object_type": pl.String,
                                                 "medium": pl.String, "culture": pl.String, "department": pl.String})
    backbone = load_backbone(f"hf:{clip_dir}")
    from PIL import Image

    with torch.inference_mode():
        batch = torch.stack([backbone.preprocess(Image.open(io.BytesIO(images[r["artwork_id"]]))) for r in rows])
        image_vectors = torch.nn.functional.normalize(backbone.forward(batch), dim=-1).numpy().astype(np.float32)
    text_vectors = embed_texts([artwork_text(r) for r in rows])
    ids = [r["artwork_id"] for r in rows]
    with _environ(ARTSIM_HOME=str(home), ARTSIM_ENV="sample"):
        defs = build_defs("sample")
        tables = defs.resources["tables"]
        for source in ("met", "smk"):
            tables.write_table(frame.filter(pl.col("source") == source), "artworks", source)
        embeddings = pl.DataFrame({"image_sha256": [r["image_sha256"] for r in rows], "model_id": [backbone.model_id] * len(rows)}).with_columns(
            pl.Series("vector", list(image_vectors), dtype=pl.List(pl.Float32)))
        for bucket, part in embeddings.with_columns(bucket=pl.col("image_sha256").map_elements(sha_bucket, return_dtype=pl.String)).group_by("bucket"):
            tables.write_table(part.drop("bucket"), "image_embeddings", bucket[0])
        tables.write_table(pl.DataFrame({"artwork_id": ids, "text_sha256": ["x"] * len(ids), "model_id": [TEXT_MODEL_ID] * len(ids)}).with_columns(
            pl.Series("vector", list(text_vectors), dtype=pl.List(pl.Float32))), "text_embeddings")
        tables.write_table(pl.DataFrame({"artwork_id": ids, "vector_source": ["backbone"] * len(ids), "model_run_id": ["test"] * len(ids)}).with_columns(
            pl.Series("vector", list(image_vectors), dtype=pl.List(pl.Float32))), "artwork_vectors")
        tables.write_table(pl.DataFrame([{"mlflow_run_id": "test", "fusion": "image", "backbone_spec": f"hf:{clip_dir}",
                                          "image_model_id": backbone.model_id, "head_key": "none"}]), "similarity_model")
        artefacts.write_ann_index(build_index(ids, image_vectors, model_run_id="test:backbone"), home / "indexes" / "ann_index")
        resources = {**defs.resources, "encoder": EncoderResource(backbone=f"hf:{clip_dir}")}
        config = QUIET_PICTURES if search_config is None else search_config
        result = materialize(list(defs.assets), selection=[AssetKey("search_index")], resources=resources,
                             run_config={"ops": {"search_index": {"config": config}}})
        assert result.success
    return {"ids": ids, "images": images, "image_vectors": dict(zip(ids, image_vectors)), "backbone": backbone, "result": result}


def write_search_index(home: Path, artworks: pl.DataFrame) -> Path:
    """A search index over `artworks` (keyword + real all-MiniLM-L6-v2 text vectors) stored the
    way `search_index` stores it, for homes built by hand (no picture ranking)."""
    from artsim_pipeline.core import text_search as ts
    from artsim_pipeline.core.ann import build_index
    from artsim_pipeline.core.ml.text import TEXT_MODEL_ID, artwork_text
    from artsim_pipeline.resources.models import embed_texts

    works = artworks.unique("artwork_id", keep="first", maintain_order=True)
    directory = Path(home) / "indexes" / "search_index"
    vectors = embed_texts([artwork_text(r) for r in works.iter_rows(named=True)])
    artefacts.write_search_index(directory, ts.KeywordIndex.build(*zip(*ts.iter_documents(works))),
                                 {ts.TEXT_DIR: build_index(works["artwork_id"].to_list(), vectors, model_run_id=TEXT_MODEL_ID)},
                                 {"parts": [ts.KEYWORD_DIR, ts.TEXT_DIR], "fusion": ts.FusionConfig().as_dict(),
                                  "text_model_id": TEXT_MODEL_ID, "works": works.height})
    return directory
