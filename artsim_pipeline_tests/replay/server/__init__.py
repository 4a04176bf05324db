"""A local replay server that stands in for the museum APIs of the source registry in tests.

These machines have no internet, and the live APIs misbehave in ways a pipeline must survive
(the Met firewall answers bursts with 403 and blocks the client, servers time out, connections
break mid-body). :class:`ReplayServer` serves real recorded records (see
``shared/data/README.md``) over HTTP on ``127.0.0.1`` with the same routes and envelopes as

* the Met Collection API, ``https://collectionapi.metmuseum.org/public/collection/v1``
  (``/objects``, ``/objects/{id}``, ``/departments``, ``/search``), and
* the SMK Open API, ``https://api.smk.dk/api/v1`` (``/art/search/``, ``/art/?object_number=``),

* every other API source of the registry (``core/sources.py``) through its paged routes in
  ``replay/paged.py`` (Cleveland under ``/cma/api``, the Art Institute of Chicago under
  ``/aic/api/v1``); ``server.base_urls`` maps each registry key to its root, and a registry API
  source without replay routes is refused when the server starts,

plus the image hosts (``/images/met/...``, ``/images/smk/...``, ``/images/cma/...``,
``/iiif/<id>/full/<size>/0/default.jpg``). Image URLs inside served records are rewritten to point at this server, and the
images are small deterministic PNGs (or whatever ``image_bytes`` returns).

Faults are programmable at run time (``server.faults.add("429", r"/objects/\\d+", count=2)``)
and every request is logged (``server.requests``, ``server.count(regex)``).

The package, by concern: ``data.py`` (the recorded records of the shared data folder),
``wire.py`` (HTTP answers, the request log's rows, the stand-in image bytes), ``faults.py``
(programmable faults and the answers they give), ``met.py`` and ``smk.py`` (each museum's
routes, records and URL rewriting; the paged APIs are ``replay/paged.py``), ``replay_server.py``
(the threaded server: lifecycle, dispatch, request log). Everything is importable from here.

Usage::

    with ReplayServer(load_shared_met_records(limit=50), load_shared_smk_records()) as srv:
        requests.get(f"{srv.met_base_url}/objects/436535").json()
"""

from artsim_pipeline_tests.replay.server.data import (
    load_shared_departments,
    load_shared_met_records,
    load_shared_smk_records,
    shared_data_dir,
)
from artsim_pipeline_tests.replay.server.faults import FIREWALL_403_HTML, Fault, FaultRegistry
from artsim_pipeline_tests.replay.server.met import MET_DEPARTMENT_ALIASES, MET_PREFIX
from artsim_pipeline_tests.replay.server.replay_server import ReplayServer
from artsim_pipeline_tests.replay.server.smk import SMK_DEFAULT_ROWS, SMK_MAX_ROWS, SMK_PREFIX
from artsim_pipeline_tests.replay.server.wire import RawJson, RequestRecord, default_image_bytes

__all__ = [
    "Fault",
    "FaultRegistry",
    "RawJson",
    "ReplayServer",
    "RequestRecord",
    "default_image_bytes",
    "load_shared_departments",
    "load_shared_met_records",
    "load_shared_smk_records",
    "shared_data_dir",
]

__all__ += ["FIREWALL_403_HTML", "MET_DEPARTMENT_ALIASES", "MET_PREFIX", "SMK_DEFAULT_ROWS", "SMK_MAX_ROWS", "SMK_PREFIX"]
