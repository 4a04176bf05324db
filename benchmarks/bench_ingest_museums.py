"""Benchmark: ingest rate of the paged museum clients (Cleveland, Art Institute of Chicago) against
their configured rate limits, as ``bench_ingest.py`` does for the Met.

What it measures
----------------
For each paged API source of the registry, a :class:`ReplayServer` serves its real recorded
records (``../shared/data/cleveland``, ``../shared/data/aic``) copied under new ids until the
listing holds ``--pages`` full pages, with ``--latency`` seconds (default 0.05) added to every
request. The client is built the way a live run builds it, ``MuseumApiResource(mode="live")
.client(source)``, so it runs at the registry's default limit (Cleveland 10 requests/s, burst 5;
AIC 0.95/s, burst 1, under its documented 60 a minute) and its default page size (100). Then
``list_ids`` pages through the whole listing and ``fetch_objects`` hands out every record (from
the listing's cache: no request per record).

Printed per source:

* ``requests``, ``records``, ``seconds`` (wall, listing + fetch) and ``records/s``;
* ``wall/limit``: (requests / wall seconds) / limit;
* ``steady/limit``: (requests - burst) / (seconds between the first and last request arriving
  at the server) / limit: 1.0 is perfect pacing (the number the >= 0.9 goal is about);
* ``max/min``: the most requests that arrived within any 60 s window (AIC: must stay <= 60).

The server runs in this process (threads, shared GIL) and the machine may be shared, so
absolute figures are indicative; the load average is printed.

Run::

    .venv/bin/python benchmarks/bench_ingest_museums.py [--latency 0.05] [--pages 60,70] [--sources cma,aic]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from artsim_pipeline.core.sources import source_spec  # noqa: E402
from artsim_pipeline.resources.museum_api import MuseumApiResource  # noqa: E402
from artsim_pipeline_tests.replay.paged import PAGED_APIS  # noqa: E402
from artsim_pipeline_tests.replay.server import ReplayServer  # noqa: E402


def replicated(records: list[dict], n: int) -> list[dict]:
    """``n`` records: the real ones, then copies of them under new ids (id + k * 10,000,000)."""
    out = []
    for k in range(-(-n // len(records))):
        for record in records:
            copy_ = copy.deepcopy(record)
            copy_["id"] = record["id"] + k * 10_000_000
            out.append(copy_)
    return out[:n]


def max_per_window(times: list[float], window: float = 60.0) -> int:
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def run(source: str, pages: int, latency: float) -> dict:
    prefix, _, _, load = PAGED_APIS[source]
    page_size = 100
    records = replicated(load(), pages * page_size)
    with ReplayServer(records={source: records}, latency_s=latency) as srv:
        client = MuseumApiResource(mode="live", base_urls={source: srv.base_urls[source]}).client(source)
        policy = client.http.policy
        t0 = time.perf_counter()
        listing = client.list_ids()
        results = list(client.fetch_objects(listing.ids))
        seconds = time.perf_counter() - t0
        client.close()
        with srv._lock:
            times = sorted(r.timestamp for r in srv.requests if prefix in r.path)
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    steady = (len(times) - policy.burst) / span if span > 0 and len(times) > policy.burst else None
    return {
        "source": source, "limit": policy.requests_per_second, "burst": policy.burst, "page_size": client.page_size,
        "requests": len(times), "records": sum(r.status == "ok" for r in results), "seconds": seconds,
        "wall_ratio": len(times) / seconds / policy.requests_per_second,
        "steady_ratio": steady / policy.requests_per_second if steady else None,
        "max_per_minute": max_per_window(times),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--sources", default="cma,aic")
    ap.add_argument("--pages", default="60,70", help="listing pages per source, in --sources order (default 60,70: AIC runs over a minute)")
    args = ap.parse_args(argv)
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    pages = [int(p) for p in args.pages.split(",")]
    print(f"# bench_ingest_museums: latency {args.latency * 1000:.0f} ms/request, cpus {os.cpu_count()}, "
          f"load avg {os.getloadavg()[0]:.2f} (machine shared with other jobs)")
    rows = [run(source, n, args.latency) for source, n in zip(sources, pages, strict=True)]
    head = (f"{'source':<6} {'limit':>6} {'burst':>5} {'page':>5} {'requests':>8} {'records':>8} {'seconds':>8} "
            f"{'rec/s':>7} {'wall/limit':>10} {'steady/limit':>12} {'max/min':>7}")
    print(head)
    print("-" * len(head))
    for r in rows:
        steady = f"{r['steady_ratio']:.3f}" if r["steady_ratio"] else "-"
        print(f"{r['source']:<6} {r['limit']:>6g} {r['burst']:>5} {r['page_size']:>5} {r['requests']:>8} {r['records']:>8} "
              f"{r['seconds']:>8.1f} {r['records'] / r['seconds']:>7.0f} {r['wall_ratio']:>10.3f} {steady:>12} "
              f"{r['max_per_minute']:>7}")
    print()
    for r in rows:
        spec = source_spec(r["source"])
        print(f"summary {r['source']} ({spec.display}): {r['steady_ratio'] or 0:.2f} of its {r['limit']:g} requests/s limit "
              f"(steady), {r['records'] / r['seconds']:.0f} records/s at {r['page_size']} a page; at most "
              f"{r['max_per_minute']} requests in any minute; load avg {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
