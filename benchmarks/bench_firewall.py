"""Benchmark: Met ingest under a rate-limiting firewall, as a ratio to what the firewall sustains.

What it measures
----------------
A :class:`ReplayServer` replays the real recorded Met records with ``--latency`` (default 50 ms)
per request, behind its ``rate_firewall`` fault on every ``/objects`` path: a token bucket of
``--fw-rate`` requests/s (default 5) and ``--fw-burst`` (10); a request that finds it empty
blocks *every* request with 403 for ``--fw-block`` seconds (20), without a ``Retry-After``
(like the Met's Akamai firewall). Its sustainable rate is ``--fw-rate``: 300 records can never
take less than 60 s.

For each configured client rate in ``--rates`` (default ``default,50``: the ``HttpPolicy``
default of 10 requests/s, and a user who set 50/s), in this one process, a fresh
``PoliteSession`` and a fresh firewall (full bucket, no block) fetch ``--records`` (300) ids
not fetched before with ``MetClient.fetch_objects``. Printed per run: seconds, records/s,
**records/s / the firewall's sustainable rate** (the goal: >= 0.5), firewall blocks, 403s
answered, the rate the limiter ended at and the block length it learned. Then one more run at
50/s that starts from the first 50/s run's learned state, as the next `raw_objects` run would.

The server runs in this process (threads, shared GIL) and the machine may be shared, so
seconds are indicative; the ratio is what the goal is about. Load average is printed.

Run::

    .venv/bin/python benchmarks/bench_firewall.py [--records 300] [--rates default,50]
        [--fw-rate 5] [--fw-burst 10] [--fw-block 20] [--latency 0.05]

Data location: ``$ARTSIM_SHARED_DATA`` or ``<repo>/../shared/data``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from artsim_pipeline.resources.clients.http import HttpPolicy, PoliteSession  # noqa: E402
from artsim_pipeline.resources.clients.met import MetClient  # noqa: E402
from artsim_pipeline_tests.replay.server import ReplayServer, load_shared_met_records  # noqa: E402


@dataclass
class Run:
    label: str
    records: int
    ok: int
    seconds: float
    blocks: int
    refused: int
    final_rate: float
    learned_block_s: float | None
    state: dict

    def ratio(self, sustainable: float) -> float:
        return self.ok / self.seconds / sustainable


def one_run(srv: ReplayServer, ids: list[str], label: str, rate: float | None, args, restore: dict | None = None) -> Run:
    srv.faults.clear()
    firewall = srv.faults.add("rate_firewall", r"/objects", rate=args.fw_rate, burst=args.fw_burst, block_s=args.fw_block)
    policy = HttpPolicy() if rate is None else HttpPolicy(requests_per_second=rate)
    http = PoliteSession(policy)
    if restore:
        http.limiter.restore(restore)
    client = MetClient(srv.met_base_url, http)
    srv.clear_requests()
    started = time.perf_counter()
    try:
        results = list(client.fetch_objects(ids))
    finally:
        client.close()
    seconds = time.perf_counter() - started
    ok = sum(1 for r in results if r.status == "ok")
    limiter = http.limiter
    return Run(label, len(ids), ok, seconds, firewall.blocks, srv.count(r"/objects", status=403), limiter.rate,
               limiter.block_s, limiter.state())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=300)
    ap.add_argument("--rates", default="default,50", help="client rates: 'default' (HttpPolicy) or req/s")
    ap.add_argument("--fw-rate", type=float, default=5.0)
    ap.add_argument("--fw-burst", type=int, default=10)
    ap.add_argument("--fw-block", type=float, default=20.0)
    ap.add_argument("--latency", type=float, default=0.05)
    args = ap.parse_args(argv)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"# bench_firewall at {commit}: firewall {args.fw_rate:g}/s, burst {args.fw_burst}, block {args.fw_block:g} s, "
          f"latency {args.latency * 1000:.0f} ms, {args.records} records per run; cpus {os.cpu_count()}, "
          f"load avg {os.getloadavg()[0]:.2f}", flush=True)
    records = load_shared_met_records()
    runs: list[Run] = []
    with ReplayServer(records, latency_s=args.latency) as srv:
        ids = [str(i) for i in srv.met_ids]
        cursor = 0

        def take() -> list[str]:
            nonlocal cursor
            chunk = ids[cursor: cursor + args.records]
            cursor += args.records
            return chunk

        learned = None
        for spec in [s.strip() for s in args.rates.split(",") if s.strip()]:
            rate = None if spec == "default" else float(spec)
            label = f"default ({HttpPolicy().requests_per_second:g}/s)" if rate is None else f"{rate:g}/s set by the user"
            run = one_run(srv, take(), label, rate, args)
            runs.append(run)
            print(f"  {run.label}: {run.ok}/{run.records} ok in {run.seconds:.1f} s, ratio {run.ratio(args.fw_rate):.2f}", flush=True)
            if rate is not None and learned is None:
                learned = (rate, run.state)
        if learned is not None:
            rate, state = learned
            run = one_run(srv, take(), f"{rate:g}/s, next run (learned state)", rate, args, restore=state)
            runs.append(run)
    print()
    head = f"{'client rate':<34} {'records':>7} {'ok':>4} {'seconds':>8} {'rec/s':>6} {'/sustainable':>12} {'blocks':>6} {'403s':>5} {'end rate':>8} {'block learned':>13}"
    print(head)
    print("-" * len(head))
    for r in runs:
        learned_s = f"{r.learned_block_s:.1f} s" if r.learned_block_s else "-"
        print(f"{r.label:<34} {r.records:>7} {r.ok:>4} {r.seconds:>8.1f} {r.ok / r.seconds:>6.2f} {r.ratio(args.fw_rate):>12.2f} "
              f"{r.blocks:>6} {r.refused:>5} {r.final_rate:>8.2f} {learned_s:>13}")
    worst = min(r.ratio(args.fw_rate) for r in runs)
    print(f"\nsummary: worst {worst:.2f} of the firewall's sustainable rate [{'PASS' if worst >= 0.5 else 'FAIL'} >= 0.5]; "
          f"load avg {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
