"""Benchmark: Met ingest throughput of ``MetClient.fetch_objects`` against its rate limit.

What it measures
----------------
A :class:`ReplayServer` (a local replay of the Met Collection API on 127.0.0.1) serves the
real recorded Met records from ``../shared/data/met`` with ``--latency`` seconds (default
0.05 = 50 ms, like a distant API) added to every request.  The ids come from
``MetClient.list_ids()``.  Then, in this one process:

1. For each rate limit in ``--rates`` (requests/s, default ``10,25,50``; 10 is the
   ``HttpPolicy`` default) ``MetClient.fetch_objects`` fetches ``--records`` objects
   (default: 10 s worth at the limit, i.e. ``10 * rate``), once with the default
   ``max_workers`` (8) and once with workers sized to the limit,
   ``max(2, ceil(rate * latency * 1.5))`` (skipped when that equals the default).
   Every run gets a fresh ``PoliteSession`` (fresh token bucket, full burst of
   ``HttpPolicy.burst`` = 5 tokens) and ids not fetched before.
2. A plain sequential loop of ``requests.get(url).json()`` over ids of the same kind (the
   way the notebooks this pipeline replaces fetched: no session, no rate limit, one at a
   time), ``--seq-records`` objects (default 100, ~5 s; its rate does not depend on the
   count, so it is not run over all the ids to keep the whole run under ~90 s).

Two ratios to the limit are printed:

* ``wall/limit``: (records / wall seconds of the whole ``fetch_objects`` call) / limit.
  This includes the token bucket's initial burst (flatters short runs) and the last
  request's latency (penalises them); with >= 10 s worth of records both are small.
* ``steady/limit``: the burst subtracted properly: (records - burst) / (time between the
  first and the last request *arriving at the server*) / limit.  An ideal token bucket
  lets ``burst`` requests through at t=0 and one every 1/rate after, so this is 1.0 for
  perfect pacing regardless of run length.  This is the number the >= 0.9 goal is about.

``vs seq`` is the pipeline's records/s divided by the sequential loop's records/s.

The replay server sets ``TCP_NODELAY`` on accepted sockets (without it, kept-alive
connections stall ~40 ms per answer on Nagle + delayed ACK, which no real API does); the
per-request round trip on fresh and kept-alive connections is printed first.

The server runs in this process (threads, shared GIL) and the machine may be shared with
other jobs, so absolute figures are indicative; the load average is printed.

Run::

    .venv/bin/python benchmarks/bench_ingest.py [--latency 0.05] [--rates 10,25,50]
        [--records N] [--seq-records 100]

Data location: ``$ARTSIM_SHARED_DATA`` or ``<repo>/../shared/data``.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from artsim_pipeline.resources.clients.http import HttpPolicy, PoliteSession  # noqa: E402
from artsim_pipeline.resources.clients.met import MetClient  # noqa: E402
from artsim_pipeline_tests.replay.server import ReplayServer, load_shared_met_records  # noqa: E402

OBJECT_PATH = r"/objects/\d+"


def round_trips(srv: ReplayServer, ids: list[str]) -> tuple[float, float]:
    """Median ms of one GET on a fresh connection each time, and on one kept-alive session."""
    url = f"{srv.met_base_url}/objects/{{}}"
    fresh, pooled = [], []
    with requests.Session() as session:
        session.get(url.format(ids[0]))  # open the connection
        for oid in ids:
            t0 = time.perf_counter()
            requests.get(url.format(oid), timeout=30)
            fresh.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            session.get(url.format(oid), timeout=30)
            pooled.append(time.perf_counter() - t0)
    return statistics.median(fresh) * 1000, statistics.median(pooled) * 1000


@dataclass
class Row:
    setting: str
    limit: float | None
    records: int
    ok: int
    seconds: float
    steady_rps: float | None  # burst-subtracted request rate seen by the server
    retries: int = 0

    @property
    def rps(self) -> float:
        return self.records / self.seconds


class IdPool:
    """Hands out ids not used before (wrapping round only if the collection runs out)."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        self.pos = 0

    def take(self, n: int) -> list[str]:
        out = []
        while len(out) < n:
            chunk = self.ids[self.pos: self.pos + (n - len(out))]
            out.extend(chunk)
            self.pos = (self.pos + len(chunk)) % len(self.ids)
        return out


def arrival_span(srv: ReplayServer) -> tuple[int, float]:
    """(number of object requests, seconds between first and last arrival) in the log."""
    import re

    rx = re.compile(OBJECT_PATH)
    with srv._lock:  # the log is appended to by handler threads
        times = sorted(r.timestamp for r in srv.requests if rx.search(r.path))
    return len(times), (times[-1] - times[0]) if len(times) > 1 else 0.0


def run_pipeline(srv: ReplayServer, ids: list[str], rate: float, workers: int, label: str) -> Row:
    policy = HttpPolicy(requests_per_second=rate, max_workers=workers)
    http = PoliteSession(policy)
    client = MetClient(srv.met_base_url, http)
    srv.clear_requests()
    try:
        t0 = time.perf_counter()
        results = list(client.fetch_objects(ids))
        seconds = time.perf_counter() - t0
    finally:
        client.close()
    n_req, span = arrival_span(srv)
    steady = (n_req - policy.burst) / span if span > 0 and n_req > policy.burst else None
    ok = sum(1 for r in results if r.status == "ok")
    return Row(label, rate, len(results), ok, seconds, steady, http.stats.retries)


def run_sequential(srv: ReplayServer, ids: list[str]) -> Row:
    ok = 0
    t0 = time.perf_counter()
    for oid in ids:
        response = requests.get(f"{srv.met_base_url}/objects/{oid}", timeout=30)
        if response.status_code == 200 and "objectID" in response.json():
            ok += 1
    seconds = time.perf_counter() - t0
    return Row("sequential requests.get", None, len(ids), ok, seconds, None)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latency", type=float, default=0.05, help="seconds added per request (default 0.05)")
    ap.add_argument("--rates", default="10,25,50", help="rate limits to test, req/s (default 10,25,50)")
    ap.add_argument("--records", type=int, default=None,
                    help="objects per pipeline run (default: 10 s worth at each limit, 10 * rate)")
    ap.add_argument("--seq-records", type=int, default=100, help="objects for the sequential loop (default 100)")
    args = ap.parse_args(argv)
    rates = [float(x) for x in args.rates.split(",") if x.strip()]
    default_workers = HttpPolicy().max_workers
    burst = HttpPolicy().burst

    t_start = time.perf_counter()
    records = load_shared_met_records()
    print(f"# bench_ingest: {len(records)} real Met records, latency {args.latency * 1000:.0f} ms/request, "
          f"cpus {os.cpu_count()}, load avg {os.getloadavg()[0]:.2f} (machine shared with other jobs)")
    rows: list[Row] = []
    with ReplayServer(records, latency_s=args.latency) as srv:
        lister = MetClient(srv.met_base_url, PoliteSession())
        all_ids = lister.list_ids().ids
        lister.close()
        fresh_ms, pooled_ms = round_trips(srv, all_ids[-8:])  # ids at the end: not used below
        print(f"# median round trip {fresh_ms:.1f} ms on a fresh connection, "
              f"{pooled_ms:.1f} ms on a kept-alive one")
        pool = IdPool(all_ids[:-8])

        seq = run_sequential(srv, pool.take(args.seq_records))
        rows.append(seq)
        for rate in rates:
            n = args.records or int(round(10 * rate))
            sized = max(2, math.ceil(rate * args.latency * 1.5))
            configs = [(default_workers, f"{rate:g} req/s, {default_workers} workers (default)")]
            if sized != default_workers:
                configs.append((sized, f"{rate:g} req/s, {sized} workers (sized)"))
            for workers, label in configs:
                rows.append(run_pipeline(srv, pool.take(n), rate, workers, label))

    print()
    head = f"{'setting':<34} {'records':>7} {'ok':>5} {'seconds':>8} {'rec/s':>7} {'wall/limit':>10} {'steady/limit':>12} {'vs seq':>7} {'retries':>7}"
    print(head)
    print("-" * len(head))
    for r in rows:
        wall = f"{r.rps / r.limit:.3f}" if r.limit else "-"
        steady = f"{r.steady_rps / r.limit:.3f}" if r.limit and r.steady_rps else "-"
        print(f"{r.setting:<34} {r.records:>7} {r.ok:>5} {r.seconds:>8.2f} {r.rps:>7.1f} {wall:>10} {steady:>12} "
              f"{r.rps / seq.rps:>7.2f} {r.retries:>7}")
    pipe = [r for r in rows if r.limit]
    worst = min(pipe, key=lambda r: (r.steady_rps or r.rps) / r.limit)
    worst_ratio = (worst.steady_rps or worst.rps) / worst.limit
    print()
    print(f"summary: fetch_objects held {worst_ratio:.2f}-{max((r.steady_rps or r.rps) / r.limit for r in pipe):.2f} "
          f"of the rate limit (steady, burst {burst} subtracted) at {args.latency * 1000:.0f} ms latency "
          f"[{'PASS' if worst_ratio >= 0.9 else 'FAIL'} >= 0.9]; sequential requests.get did {seq.rps:.1f} rec/s, "
          f"so the pipeline is {min(r.rps for r in pipe) / seq.rps:.2f}x-{max(r.rps for r in pipe) / seq.rps:.2f}x the "
          f"notebook loop; load avg {os.getloadavg()[0]:.2f}, total {time.perf_counter() - t_start:.0f} s.")


if __name__ == "__main__":
    main()
