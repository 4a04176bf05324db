"""The similar-works search over what the pipeline stored: one entry point for the CLI, the UI
and any HTTP API. Reads the live index and tables under `$ARTSIM_HOME`."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl

from artsim_pipeline import settings
from artsim_pipeline.core.sources import SOURCES
from artsim_pipeline.resources.storage import ArtsimStorage
from artsim_pipeline.resources.tables import TableStore


class NotBuiltError(RuntimeError):
    """The index (or a table it needs) has not been materialised yet."""


class ImageQueryError(ValueError):
    """A query image that cannot be read or embedded."""


class SimilarityService:
    """Loads the index and tables lazily, once."""

    @classmethod
    def for_environment(cls) -> "SimilarityService":
        """The service over the storage `ARTSIM_ENV` names (S3 in prod, `$ARTSIM_HOME` otherwise)."""
        from artsim_pipeline.resources.environment import build_resources

        resources = build_resources(settings.artsim_env())
        return cls(tables=resources["tables"], storage=resources["storage"])

    def __init__(self, home: Path | None = None, *, tables: TableStore | None = None, storage: ArtsimStorage | None = None) -> None:
        self.home = Path(home) if home else settings.artsim_home()
        self.tables = tables or TableStore(base_dir=str(self.home / "storage"))
        self.storage = storage or ArtsimStorage(home=str(self.home))

    def _table(self, key: str, partition: str | None = None) -> pl.DataFrame:
        df = self.tables.read_table(key, partition)
        if df is None:
            raise NotBuiltError(f"{key} is not materialised under {self.home} (run `make run` first)")
        return df

    @cached_property
    def index(self):
        from artsim_pipeline.resources.artefacts import load_ann_index

        try:
            return load_ann_index(self.storage)
        except FileNotFoundError as exc:
            raise NotBuiltError(f"{exc} (run `make run` first)") from exc

    @cached_property
    def artworks(self) -> pl.DataFrame:
        frames = [df for df in (self.tables.read_table("artworks", s) for s in SOURCES) if df is not None]
        if not frames:
            raise NotBuiltError("artworks is not materialised")
        return pl.concat(frames, how="diagonal_relaxed")

    @cached_property
    def artwork_rows(self):
        """Artworks rows by id without the table in memory (`core.search.ArtworkRows` over the
        memory-mapped serving copies of `resources.artefacts.serving_artworks`)."""
        from artsim_pipeline.resources.artefacts import serving_artworks

        rows = serving_artworks(self.storage, self.tables, SOURCES)
        if rows is None:
            raise NotBuiltError("artworks is not materialised")
        return rows

    @cached_property
    def vectors(self) -> pl.DataFrame:
        return self._table("artwork_vectors")

    def similar(self, artwork_id: str, k: int = 10, source: str | None = None, filters=None) -> list[dict]:
        """The k works most like `artwork_id` (never itself); raises UnknownArtworkError.
        `filters` (a `core.text_search.SearchFilters`) restricts them by museum, kind and years
        (raises SearchQueryError when no work passes). The query vector is the one the index
        holds (the work's `artwork_vectors` row, as indexed) and only the k results' rows are read."""
        from artsim_pipeline.core.search import similar

        return similar(artwork_id, k, self.index, None, self.artwork_rows, source=source,
                       filter_labels=self._filter_labels(filters))

    # -- search by words -----------------------------------------------------------------------

    @cached_property
    def catalog(self):
        """Every work with what search filters and results need (`core.text_search.Catalog`)."""
        from artsim_pipeline.core.text_search import Catalog

        return Catalog(self.artworks)

    @cached_property
    def _index_ranking(self):
        from artsim_pipeline.core.text_search import VectorRanking

        return VectorRanking(self.index, self.catalog)

    def _filter_labels(self, filters):
        """`ann_index` labels the filters allow (None: every label)."""
        if filters is None or not filters.active:
            return None
        return self._index_ranking.allowed(self.catalog.mask(filters))

    @cached_property
    def text_search(self):
        """The stored `search_index` with its query embedders (`core.text_search.TextSearch`)."""
        from artsim_pipeline.core import text_search as ts
        from artsim_pipeline.resources.artefacts import load_search_index

        try:
            info, keyword, text_index, image_index = load_search_index(self.storage)
        except FileNotFoundError as exc:
            raise NotBuiltError(f"{exc} (run `make run` first)") from exc
        return ts.TextSearch(self.catalog, keyword, text_index, _text_embedder(info.get("text_model_id")),
                             image_index, _image_text_embedder(info) if image_index is not None else None,
                             ts.FusionConfig.from_dict(info.get("fusion")))

    def search(self, query: str, k: int = 10, filters=None, only=None) -> list[dict]:
        """Works ranked by meaning for a text query (see `core.text_search.TextSearch.search`);
        raises SearchQueryError for an empty query or filters no work passes."""
        return self.text_search.search(query, k, filters, only)

    # -- search by image -----------------------------------------------------------------------

    def embed_image_file(self, path: str | Path) -> np.ndarray:
        """A local image as a query vector in the index's space (see `embed_image`)."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                image.load()
                rgb = image.convert("RGB")
        except (OSError, UnidentifiedImageError) as exc:
            raise ImageQueryError(f"cannot read image {path}: {exc}") from exc
        return self.embed_image(rgb)

    def image_encoder(self, raw: bool = False):
        """(backbone, head or None, model id) that put an image into the index's space: the
        backbone the model was trained on (recorded in its row), then the head when the index
        serves trained vectors and `raw` is False."""
        from artsim_pipeline.resources.artefacts import load_head
        from artsim_pipeline.resources.models import load_backbone

        model = self._table("similarity_model").row(0, named=True)
        if model["fusion"] != "image":
            raise ImageQueryError(f"the model uses fusion={model['fusion']!r}; an image alone cannot be searched with it")
        backbone = load_backbone(model["backbone_spec"])
        if backbone.model_id != model["image_model_id"]:
            raise ImageQueryError(f"backbone {backbone.model_id} differs from the model's {model['image_model_id']}")
        served = self.served_vector_source()
        if raw or served != "trained":
            return backbone, None, backbone.model_id
        head = load_head(self.storage, model["head_key"])[0]
        return backbone, head, f"{backbone.model_id}+{model['head_key']}"

    def served_vector_source(self) -> str:
        """What the index serves: ``trained`` vectors or the raw backbone's. Read from the index's
        model run id (``<run>:<vector_source>``, as `ann_index` builds it), so that an image query
        does not load `artwork_vectors` (1,280 floats a work: 2.4 GB at 470,000 works); from the
        table only for an index without one."""
        run = self.index.model_run_id or ""
        if ":" in run:
            return run.rsplit(":", 1)[1]
        return self.vectors["vector_source"][0] if self.vectors.height else "trained"

    def embed_image(self, rgb) -> np.ndarray:
        """An RGB PIL image as a query vector in the index's space (see `image_encoder`)."""
        from artsim_pipeline.core.ml.embed import embed_batch

        backbone, head, _ = self.image_encoder()
        vector = embed_batch(backbone, backbone.preprocess(rgb).unsqueeze(0)).cpu().numpy()
        if head is not None:
            from artsim_pipeline.core.ml.similarity import apply_head

            vector = apply_head(head, vector)
        return vector[0]

    def embed_image_files(self, paths: list[str], raw: bool = False, batch_size: int = 32):
        """Image files as vectors in the index's space (`raw`: the backbone's space).

        Returns (rows of ``path``, ``model_id``, ``vector`` in input order, [(path, reason)] for
        the files that could not be read or embedded).
        """
        from artsim_pipeline.resources.models import embed_image_files

        backbone, head, model_id = self.image_encoder(raw)
        failures: list[tuple[str, str]] = []
        readable = []
        for path in paths:
            if not Path(path).is_file():
                failures.append((path, "no such file"))
            else:
                readable.append(path)
        result = embed_image_files([(path, path) for path in readable], backbone, batch_size=batch_size, num_workers=0)
        failures += [(str(key), str(reason)) for key, reason in result.failures]
        vectors = result.vectors
        if head is not None and len(vectors):
            from artsim_pipeline.core.ml.similarity import apply_head

            vectors = apply_head(head, vectors)
        by_path = dict(zip(result.keys, vectors))
        rows = [{"path": path, "model_id": model_id, "vector": by_path[path]} for path in readable if path in by_path]
        return rows, failures

    def similar_to_image(self, path: str | Path, k: int = 10, source: str | None = None, filters=None) -> list[dict]:
        return self.similar_to_vector(self.embed_image_file(path), k, source, filters)

    def similar_to_vector(self, vector: np.ndarray, k: int = 10, source: str | None = None, filters=None) -> list[dict]:
        from artsim_pipeline.core.search import similar_to_vector

        return similar_to_vector(vector, k, self.index, self.artwork_rows, source=source,
                                 filter_labels=self._filter_labels(filters))


def _one_query_thread() -> None:
    """Queries are one short text each: torch's intra-op threads buy nothing there and, on a busy
    machine, cost 10-100x in latency (measured: 5-10 ms on one thread, 30-700 ms on two under
    load; see the README's *Measured*). Process-wide, set when a query is first embedded."""
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def _text_embedder(model_id: str | None):
    """Query text -> vector with the model the search index's text vectors came from."""
    from artsim_pipeline.core.ml.text import TEXT_MODEL_ID

    path = None if model_id in (None, TEXT_MODEL_ID) else model_id

    def embed(query: str) -> np.ndarray:
        from artsim_pipeline.resources.models import embed_texts

        _one_query_thread()
        return embed_texts([query], model_path=path)[0]

    return embed


def _image_text_embedder(info: dict):
    """Query text -> vector by the dual encoder's text tower (loaded on first use), checked to be
    the model the index's image vectors came from."""
    loaded: list = []

    def embed(query: str) -> np.ndarray:
        if not loaded:
            from artsim_pipeline.resources.models import load_backbone

            backbone = load_backbone(info["backbone_spec"])
            if backbone.model_id != info.get("image_model_id"):
                raise NotBuiltError(f"backbone {backbone.model_id} differs from the search index's {info.get('image_model_id')}: "
                                    "materialise search_index again")
            loaded.append(backbone)
        _one_query_thread()
        return loaded[0].embed_text([query])[0]

    return embed
