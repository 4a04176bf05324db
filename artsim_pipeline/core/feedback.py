"""Curator feedback: judgments (validated, serialised, parsed) and what the model learns from them.

A *judgment* is one answer on the ``/feedback`` page of ``artsim serve``: the curator saw an
*anchor* work and 8 *candidates* (some of its nearest works, some random ones, shuffled) and
picked the candidate most similar to the anchor.

Storage: one JSON object per line (:func:`judgment_line`)::

    {"judgment_id": "...", "anchor_id": "met:1", "candidate_ids": ["smk:KMS1", ...],
     "chosen_id": "smk:KMS1", "curator": "anna", "created_at": "2026-01-01T12:00:00+00:00"}

Where the lines are kept and how they are appended durably (a locked, fsync-ed journal under
``$ARTSIM_HOME/feedback/``, one object per judgment on S3) is the storage layout's business:
``resources/artefacts/``. Reading them back (:func:`parse_judgments`) skips a torn
(unterminated) last line silently and logs a warning for any other line that is not a valid
judgment.

Learning from judgments:

- :func:`judgments_to_pairs` turns every pick into a positive pair ``(anchor, chosen)`` with
  the ``weak_pairs`` columns (rule ``curator_pick``);
- :func:`mean_rank_of_pick` is the "Training the Archive" metric: how highly the model ranks
  the curator's pick among the anchor's candidates (see its docstring).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl

from artsim_pipeline.core.pairs import PAIRS_SCHEMA

logger = logging.getLogger(__name__)

CURATOR_PICK_RULE = "curator_pick"
N_CANDIDATES = 8
N_NEAREST = 5
MAX_CURATOR_LEN = 100

JUDGMENTS_SCHEMA: dict[str, pl.DataType] = {
    "judgment_id": pl.String(),
    "anchor_id": pl.String(),
    "candidate_ids": pl.List(pl.String()),
    "chosen_id": pl.String(),
    "curator": pl.String(),
    "created_at": pl.Datetime("us", "UTC"),
}

VectorsLookup = Mapping[str, Any] | Callable[[str], Any] | pl.DataFrame


class InvalidJudgmentError(ValueError):
    """A judgment that cannot be recorded (missing ids, pick not among the candidates, ...)."""


# -- writing ---------------------------------------------------------------------------------------


def make_judgment(
    anchor_id: str,
    candidate_ids: Sequence[str],
    chosen_id: str,
    curator: str | None = None,
    *,
    judgment_id: str | None = None,
    created_at: datetime | None = None,
) -> dict[str, Any]:
    """A validated judgment record (a plain dict, ready for :func:`judgment_line`).

    Rules: ids are non-empty strings; the candidates are distinct, at least 2, and exclude the
    anchor; the pick is one of the candidates; the curator name is stripped, at most
    ``MAX_CURATOR_LEN`` characters, ``"anonymous"`` when empty.
    """
    if not isinstance(anchor_id, str) or not anchor_id:
        raise InvalidJudgmentError("anchor_id must be a non-empty string")
    cands = list(candidate_ids)
    if len(cands) < 2 or not all(isinstance(c, str) and c for c in cands):
        raise InvalidJudgmentError("candidate_ids must hold at least 2 non-empty strings")
    if len(set(cands)) != len(cands):
        raise InvalidJudgmentError("candidate_ids must be distinct")
    if anchor_id in cands:
        raise InvalidJudgmentError("the anchor cannot be one of its own candidates")
    if chosen_id not in cands:
        raise InvalidJudgmentError("chosen_id must be one of candidate_ids")
    name = (curator or "").strip() or "anonymous"
    if len(name) > MAX_CURATOR_LEN or any(ord(ch) < 32 for ch in name):
        raise InvalidJudgmentError(f"curator must be at most {MAX_CURATOR_LEN} printable characters")
    when = created_at or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return {
        "judgment_id": judgment_id or uuid.uuid4().hex,
        "anchor_id": anchor_id,
        "candidate_ids": cands,
        "chosen_id": chosen_id,
        "curator": name,
        "created_at": when.astimezone(UTC).isoformat(timespec="microseconds"),
    }


def judgment_line(record: Mapping[str, Any]) -> bytes:
    """One judgment as its stored line: compact JSON, UTF-8, ending in a newline."""
    line = json.dumps(dict(record), ensure_ascii=False, separators=(",", ":")) + "\n"
    if "\n" in line[:-1]:  # json.dumps escapes newlines; guard the invariant anyway
        raise InvalidJudgmentError("a judgment must serialise to one line")
    return line.encode("utf-8")


# -- reading ---------------------------------------------------------------------------------------


def _valid_record(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and all(isinstance(obj.get(k), str) and obj.get(k) for k in ("judgment_id", "anchor_id", "chosen_id"))
        and isinstance(obj.get("candidate_ids"), list)
        and all(isinstance(c, str) for c in obj["candidate_ids"])
        and isinstance(obj.get("created_at"), str)
    )


def parse_judgments(raw: bytes, where: str = "judgments") -> list[dict[str, Any]]:
    """Every complete judgment line of a journal's bytes, in order (a torn last line is skipped;
    `where` names the journal in the log)."""
    lines = raw.split(b"\n")
    torn = lines.pop()  # b"" when the file ends with a newline, else an unterminated line
    if torn.strip():
        logger.info("%s: ignoring an unterminated last line (%d bytes)", where, len(torn))
    out = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            obj = None
        if not _valid_record(obj):
            logger.warning("%s:%d: skipping a line that is not a valid judgment", where, number)
            continue
        out.append(obj)
    return out


def judgments_frame(records: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """Judgment records as a frame with :data:`JUDGMENTS_SCHEMA` (empty when there are none).

    A judgment id seen twice (a retried append) is kept once, the first time it appears.
    """
    if not records:
        return pl.DataFrame(schema=JUDGMENTS_SCHEMA)
    frame = pl.DataFrame(
        {
            "judgment_id": [r["judgment_id"] for r in records],
            "anchor_id": [r["anchor_id"] for r in records],
            "candidate_ids": [r["candidate_ids"] for r in records],
            "chosen_id": [r["chosen_id"] for r in records],
            "curator": [r.get("curator") or "anonymous" for r in records],
            "created_at": [r["created_at"] for r in records],
        },
        schema_overrides={"candidate_ids": pl.List(pl.String())},
    )
    frame = frame.with_columns(
        pl.col("created_at").str.to_datetime(time_zone="UTC", time_unit="us", strict=False)
    )
    return frame.unique("judgment_id", keep="first", maintain_order=True).cast(JUDGMENTS_SCHEMA)


def _as_frame(judgments: pl.DataFrame | Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    if isinstance(judgments, pl.DataFrame):
        return judgments
    rows = list(judgments)
    if not rows:
        return pl.DataFrame(schema=JUDGMENTS_SCHEMA)
    return pl.DataFrame(
        {
            "judgment_id": [r.get("judgment_id") or f"j{i}" for i, r in enumerate(rows)],
            "anchor_id": [r["anchor_id"] for r in rows],
            "candidate_ids": [list(r["candidate_ids"]) for r in rows],
            "chosen_id": [r["chosen_id"] for r in rows],
        },
        schema_overrides={"candidate_ids": pl.List(pl.String())},
    )


# -- learning from judgments -----------------------------------------------------------------------


def judgments_to_pairs(
    judgments: pl.DataFrame | Iterable[Mapping[str, Any]], weight: float = 2.0
) -> pl.DataFrame:
    """One positive pair per distinct (anchor, pick), with the ``weak_pairs`` columns.

    ``artwork_id_a < artwork_id_b`` (the anchor and the pick, ordered), ``label`` 1, ``rule``
    ``"curator_pick"``, ``weight`` as given; several judgments of the same pair give one row.
    ``split`` is null: the caller assigns it with the rest of ``weak_pairs`` (group-disjoint).
    """
    frame = _as_frame(judgments)
    if frame.height == 0:
        return pl.DataFrame(schema=PAIRS_SCHEMA)
    a, b = pl.col("anchor_id"), pl.col("chosen_id")
    return (
        frame.filter(a.is_not_null() & b.is_not_null() & (a != b))
        .select(
            pl.min_horizontal(a, b).alias("artwork_id_a"),
            pl.max_horizontal(a, b).alias("artwork_id_b"),
        )
        .unique(maintain_order=True)
        .with_columns(
            pl.lit(1, pl.Int8).alias("label"),
            pl.lit(CURATOR_PICK_RULE).alias("rule"),
            pl.lit(weight, pl.Float32).alias("weight"),
            pl.lit(None, pl.String).alias("split"),
        )
        .cast(PAIRS_SCHEMA)
    )


def _vectors_for(lookup: VectorsLookup, ids: set[str]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if isinstance(lookup, pl.DataFrame):
        hits = lookup.filter(pl.col("artwork_id").is_in(list(ids))).unique("artwork_id", keep="first")
        for aid, vec in zip(hits["artwork_id"].to_list(), hits["vector"].to_list(), strict=True):
            if vec is not None:
                out[aid] = np.asarray(vec, dtype=np.float64)
        return out
    for aid in ids:
        if isinstance(lookup, Mapping):
            vec = lookup.get(aid)
        else:
            try:
                vec = lookup(aid)
            except KeyError:
                vec = None
        if vec is not None:
            out[aid] = np.asarray(vec, dtype=np.float64)
    return out


def _unit(v: np.ndarray) -> np.ndarray | None:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 and math.isfinite(norm) else None


def pick_ranks(
    vectors_lookup: VectorsLookup, judgments: pl.DataFrame | Iterable[Mapping[str, Any]]
) -> pl.DataFrame:
    """The rank the model gives each curator pick (see :func:`mean_rank_of_pick`).

    Columns: ``judgment_id``, ``rank`` (1.0 best .. n_candidates), ``n_candidates``.
    Judgments where any of the anchor or its candidates has no vector are left out.
    """
    frame = _as_frame(judgments)
    needed = set(frame["anchor_id"].to_list())
    for cands in frame["candidate_ids"].to_list():
        needed.update(cands or [])
    vecs = {k: u for k, v in _vectors_for(vectors_lookup, needed).items() if (u := _unit(v)) is not None}
    jid, rank, n_c = [], [], []
    for row in frame.select("judgment_id", "anchor_id", "candidate_ids", "chosen_id").iter_rows():
        judgment_id, anchor, cands, chosen = row
        cands = list(cands or [])
        if anchor not in vecs or chosen not in cands or any(c not in vecs for c in cands):
            continue
        scores = np.array([float(vecs[c] @ vecs[anchor]) for c in cands])
        pick = scores[cands.index(chosen)]
        higher = int(np.sum(scores > pick))
        ties = int(np.sum(scores == pick)) - 1  # other candidates scored exactly like the pick
        jid.append(judgment_id)
        rank.append(1.0 + higher + 0.5 * ties)
        n_c.append(len(cands))
    return pl.DataFrame(
        {"judgment_id": jid, "rank": rank, "n_candidates": n_c},
        schema={"judgment_id": pl.String, "rank": pl.Float64, "n_candidates": pl.Int32},
    )


def mean_rank_of_pick(
    vectors_lookup: VectorsLookup, judgments: pl.DataFrame | Iterable[Mapping[str, Any]]
) -> float:
    """Mean rank of the curator's pick under the model: the "Training the Archive" metric.

    Each judgment shows 9 works: the anchor and its 8 candidates. The model ranks the 8
    candidates by cosine similarity of their vectors (``vectors_lookup``: a mapping or callable
    ``artwork_id -> vector``, or an ``artwork_vectors`` frame) to the anchor's vector, most
    similar first; the pick's rank is ``1 + (candidates scored higher) + 0.5 * (other candidates
    scored exactly the same)``, i.e. 1 (the model agrees with the curator) .. 8, ties counted as
    the expected rank under random tie-breaking. The metric is the mean over judgments whose 9
    works all have vectors (others are left out: see :func:`pick_ranks`). Lower is better; a
    model that ranks at random scores ``(n + 1) / 2`` = 4.5 for 8 candidates. Returns NaN when
    no judgment can be scored.
    """
    ranks = pick_ranks(vectors_lookup, judgments)
    return float(ranks["rank"].mean()) if ranks.height else float("nan")


# -- the feedback task -----------------------------------------------------------------------------


def anchor_rng(anchor_id: str, seed: int = 0) -> random.Random:
    """A random generator that depends only on ``(seed, anchor_id)`` (stable across runs)."""
    digest = hashlib.sha256(f"{seed}:{anchor_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def choose_candidates(
    anchor_id: str,
    nearest_ids: Sequence[str],
    pool_ids: Sequence[str],
    n: int = N_CANDIDATES,
    n_nearest: int = N_NEAREST,
    seed: int = 0,
) -> list[str]:
    """The ``n`` candidates shown with ``anchor_id``: deterministic per ``(anchor, seed)``.

    The first ``n_nearest`` of ``nearest_ids`` (the model's neighbours, best first) plus random
    works from ``pool_ids`` (fewer random ones if the pool is short, more nearest ones if it
    is empty), never the anchor, no repeats, shuffled with a generator seeded by the anchor id.
    """
    rng = anchor_rng(anchor_id, seed)
    nearest = list(dict.fromkeys(a for a in nearest_ids if a != anchor_id))
    chosen = nearest[: max(0, min(n_nearest, n))]
    taken = set(chosen) | {anchor_id}
    pool = sorted(set(pool_ids) - taken)
    extra = rng.sample(pool, min(n - len(chosen), len(pool)))
    chosen += extra
    taken.update(extra)
    if len(chosen) < n:
        chosen += [a for a in nearest if a not in taken][: n - len(chosen)]
    rng.shuffle(chosen)
    return chosen
