"""The index's structure without storage: hnswlib parameters, the label bookkeeping of a build
(`IndexState`: the hnswlib index, every label ever assigned, which are deleted, the live ids) and
the build info that goes with it. See the package docstring for how labels behave."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from artsim_pipeline.core.ann.reduction import fit_projection, half_rows, project

if TYPE_CHECKING:  # hnswlib is imported where an index is built, so configs load light
    import hnswlib

FORMAT_VERSION = 1

_SPACES = ("cosine", "ip")  # both give 1 - cos on L2-normalised vectors
GROWTH = 1.25  # spare capacity when the index has to grow
_BUILD_CHUNK = 50_000  # rows per add_items call (progress granularity)
EXACT_FILTER_MAX = 2_000  # label filters allowing at most this many items use exact search

LabelFilter = Collection[int] | Callable[[int], bool]


@dataclass(frozen=True)
class AnnConfig:
    """hnswlib parameters. ``num_threads=None`` means every core (hnswlib's ``-1``).

    ``search_dim`` > 0 (and below the vectors' dimension) makes the index two-stage
    (`core.ann.reduction`): hnswlib searches the vectors projected to ``search_dim`` dimensions,
    takes ``oversample`` x k candidates and re-ranks them exactly with the full vectors, stored as
    float16. 0 keeps the full vectors in hnswlib. ``oversample`` and ``ef`` are query-time
    settings; the others are fixed when the index is built.
    """

    M: int = 16
    ef_construction: int = 200
    ef: int = 100
    space: str = "cosine"
    num_threads: int | None = None
    random_seed: int = 100
    search_dim: int = 0
    oversample: int = 8

    def __post_init__(self) -> None:
        if self.space not in _SPACES:
            raise ValueError(f"space must be one of {_SPACES}, got {self.space!r}")
        if self.M < 2 or self.ef_construction < 1 or self.ef < 1:
            raise ValueError("M must be >= 2, ef_construction and ef >= 1")
        if self.search_dim < 0 or self.oversample < 1:
            raise ValueError("search_dim must be >= 0 (0: no reduction) and oversample >= 1")

    def build_parameters(self) -> tuple:
        """What a built index is fixed to: another value means building it again."""
        return (self.space, self.M, self.ef_construction, self.random_seed, self.search_dim)

    @property
    def threads(self) -> int:
        return -1 if not self.num_threads else int(self.num_threads)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnnConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class UpdateResult:
    """What :meth:`AnnIndex.update` did."""

    added: int = 0
    deleted: int = 0
    updated: int = 0
    unchanged: int = 0
    rebuilt: bool = False
    reason: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# vector helpers


@dataclass
class IndexState:
    """Everything that a rebuild swaps at once."""

    index: "hnswlib.Index"
    dim: int
    label_ids: np.ndarray  # object: artwork_id of every label ever assigned (index = label)
    deleted: np.ndarray  # bool, per label
    live: dict[str, int] = field(default_factory=dict)  # artwork_id -> label, live only
    # two-stage index (`reduction`): the projection hnswlib's vectors went through
    # (search_dim x dim) and the full unit vectors as float16 rows by label (an array, or, read
    # from storage, anything that gives rows by `full[labels]`, `.shape`, `.dtype` and
    # `np.asarray(full)`: `resources.artefacts.row_file.RowFile`); None: hnswlib holds the full
    # vectors
    projection: np.ndarray | None = None
    full: np.ndarray | None = None

    @property
    def search_dim(self) -> int:
        """The dimension hnswlib searches."""
        return self.dim if self.projection is None else int(self.projection.shape[0])

    def searched(self, x: np.ndarray) -> np.ndarray:
        """Unit full-dimensional rows as hnswlib holds them."""
        return x if self.projection is None else project(x, self.projection)


def create_state(
    ids: Sequence[str],
    x: np.ndarray,
    config: AnnConfig,
    prior_label_ids: np.ndarray | None = None,
    prior_deleted: np.ndarray | None = None,
    prior_live: dict[str, int] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[IndexState, float]:
    """A fresh hnswlib index over (ids, unit vectors x); labels of ``prior_live`` ids kept. With
    a ``config.search_dim`` below the vectors' dimension, a projection fitted on ``x`` and the
    full vectors as float16 by label (rows of deleted labels zero: never read)."""
    n, dim = x.shape
    label_ids = list(prior_label_ids) if prior_label_ids is not None else []
    deleted = list(prior_deleted) if prior_deleted is not None else []
    prior_live = prior_live or {}
    # every prior live label not in the new set is now deleted
    keep = set(ids)
    for aid, lab in prior_live.items():
        if aid not in keep:
            deleted[lab] = True
    labels = np.empty(n, dtype=np.int64)
    live: dict[str, int] = {}
    for i, aid in enumerate(ids):
        lab = prior_live.get(aid)
        if lab is None:
            lab = len(label_ids)
            label_ids.append(aid)
            deleted.append(False)
        labels[i] = lab
        live[aid] = lab
    import hnswlib

    projection = full = None
    if 0 < config.search_dim < dim:
        projection = fit_projection(x, config.search_dim, seed=config.random_seed)
        full = np.zeros((len(label_ids), dim), dtype=np.float16)
        full[labels] = half_rows(x)
    searched = x if projection is None else project(x, projection)
    index = hnswlib.Index(space=config.space, dim=searched.shape[1])
    index.init_index(
        max_elements=max(n, 1),
        M=config.M,
        ef_construction=config.ef_construction,
        random_seed=config.random_seed,
        allow_replace_deleted=True,
    )
    if config.threads > 0:
        index.set_num_threads(config.threads)
    t0 = time.perf_counter()
    for start in range(0, n, _BUILD_CHUNK):
        stop = min(n, start + _BUILD_CHUNK)
        index.add_items(searched[start:stop], labels[start:stop], num_threads=config.threads)
        if progress is not None:
            progress(stop, n)
    seconds = time.perf_counter() - t0
    index.set_ef(config.ef)
    label_arr = np.empty(len(label_ids), dtype=object)
    label_arr[:] = label_ids
    state = IndexState(index, dim, label_arr, np.asarray(deleted, dtype=bool), live, projection, full)
    return state, seconds



def check_ids(ids: Sequence[str], n_vectors: int) -> list[str]:
    ids = [str(a) for a in ids]
    if len(ids) != n_vectors:
        raise ValueError(f"{len(ids)} ids for {n_vectors} vectors")
    if len(set(ids)) != len(ids):
        raise ValueError("artwork ids must be unique")
    return ids



def hnswlib_version() -> str:
    import hnswlib

    return getattr(hnswlib, "__version__", "0.8.0")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def base_info(
    config: AnnConfig,
    state: IndexState,
    seconds: float,
    model_run_id: str | None,
    model_version: str | None,
) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "config": asdict(config),
        "space": config.space,
        "M": config.M,
        "ef_construction": config.ef_construction,
        "ef": config.ef,
        "dim": state.dim,
        "search_dim": state.search_dim,
        "count": len(state.live),
        "element_count": int(state.index.element_count),
        "max_elements": int(state.index.max_elements),
        "next_label": len(state.label_ids),
        "build_seconds": round(seconds, 3),
        "built_at": now(),
        "model_run_id": model_run_id,
        "model_version": model_version,
        "hnswlib_version": hnswlib_version(),
    }
