"""The storage layout: where every artefact the pipeline stores beside its tables lives, and the
functions that write and read it. Assets, the service, the web app and the CLI go through here;
none of them builds a key or a file name itself.

Keys are relative to the storage of `ArtsimStorage` (`$ARTSIM_HOME` locally, the S3 prefix in
prod); the tables themselves are the IO manager's (`storage/<asset>/<partition>.parquet`,
`resources/tables.py`).

| artefact | key | written by |
|---|---|---|
| images | `images/<sha[:2]>/<sha>.<ext>` (content-addressed) | `raw_images` |
| fetch cursors | `state/raw_objects/<source>.json` | `raw_objects` |
| normalisation state | `state/artworks/<source>.parquet`: per ok raw record its key, its table and its row's hash, under the normaliser version (what lets a run re-normalise only changed records) | `artworks` |
| image URL memo | `cache/raw_images/<source>.parquet`: per ok raw record its `source_id`, the hash of its `raw_json` and its image URL, under the version of the URL code (what lets a run parse only changed records; a cache: in the storage, S3 in prod; unreadable, missing or of another version, every record is parsed) | `raw_images` |
| fetch journal | `checkpoints/raw_objects/<source>.jsonl` (always local: only a crashed run on the same machine resumes from it; emptied once the run's rows are stored) | `raw_objects` |
| curator judgments | `feedback/judgments.jsonl` (a local journal, `resources/journal.py`); on S3 one object per judgment, `feedback/judgments/<judgment_id>.json`, never overwritten | `artsim serve` |
| similar-works index | `indexes/ann_index/`: `index.bin` (hnswlib), `id_map.parquet`, `build_info.json`; replaced whole | `ann_index` |
| similarity heads | `models/similarity_model/<mlflow run id>/`: `head.pt`, `head_config.json` | `similarity_model` |
| search index | `indexes/search_index/`: `keyword/` (bm25s + `ids.parquet` + `documents.parquet`: each work's tokens with the fields they came from and the tokeniser's signature, what the next build reuses), `text/`, `image/` (as the ANN index; left as stored when unchanged), `search_info.json` written last | `search_index` |
| collection map | `maps/collection_map.html` (the single-file page, small collections); `maps/collection_map/`: `manifest.json`, `chunks/<hash>.bin`, `details-<hash>.parquet` (the chunked map), `layout/` (coordinates and vector fingerprints for incremental placement) | `collection_map` |
| clusters' state | `models/clusters/`: `labels.parquet`, `centroids.npy`, `info.json` (for incremental assignment) | `clusters` |
| clusters' summary | `models/clusters/summary/`: `table.parquet`, `info.json` (the key of the labels and metadata it summarises; reused when only titles changed) | `clusters` |
| near-duplicate candidates | `models/near_duplicates/`: `table.parquet` (the pairs before titles are joined), `info.json` (threshold, the key of the vectors, weak pairs, index and settings they came from) | `near_duplicates` |
| serving copy of `artworks` | `cache/serving/artworks/<source>-<fingerprint digest>.arrow` (always local: uncompressed Arrow, sorted by `artwork_id`, memory-mapped) | `artsim serve`, `artsim similar` (from the table, when it changed) |

Heavy libraries (hnswlib, torch, bm25s) are imported inside the functions that need them. One module per
kind of artefact (images, image_url_memo, fetch_journal, judgments, indexes, serving, maps, curation); every name is re-exported
here, so callers write `artefacts.save_head(...)`.
"""

from artsim_pipeline.resources.artefacts.images import *  # noqa: F401,F403
from artsim_pipeline.resources.artefacts.fetch_journal import *  # noqa: F401,F403
from artsim_pipeline.resources.artefacts.normalise_state import *  # noqa: F401,F403
from artsim_pipeline.resources.artefacts.image_url_memo import *  # noqa: F401,F403
from artsim_pipeline.resources.artefacts.judgments import *  # noqa: F401,F403
from artsim_pipeline.resources.artefacts.indexes import *  # noqa: F401,F403
from artsim_pipeline.resources.artefacts.serving import *  # noqa: F401,F403
from artsim_pipeline.resources.artefacts.maps import *  # noqa: F401,F403
from artsim_pipeline.resources.artefacts.curation import *  # noqa: F401,F403
