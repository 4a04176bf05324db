"""The `artsim` command line: run the pipeline, and (as issues add them) query its results."""

from __future__ import annotations

import argparse
import sys

from artsim_pipeline import settings
from artsim_pipeline.core.sources import SOURCES
from artsim_pipeline.materialize import load_run_config, materialize_all  # noqa: F401 - materialize_all: the CLI's, also for tests


def _prepare_environment() -> None:
    """Defaults so `artsim` works from any shell: state in ARTSIM_HOME, the repo's dagster.yaml."""
    for warning in settings.prepare_process_environment():
        print(f"artsim: {warning}", file=sys.stderr)


def print_summary(report: dict) -> None:
    from artsim_pipeline.summary import collect_summary

    print("\n== artsim summary ==")
    recomputed = report.get("recomputed", [])
    print(f"  recomputed: {len(recomputed)} asset partitions (one line each above); up to date: {report.get('up_to_date', 0)}")
    for step, seconds in report.items():
        if isinstance(seconds, float):
            print(f"  {step}: {seconds:.1f} s")
    for line in collect_summary():
        print(f"  {line}")


def exit_without_teardown(code: int) -> None:
    """End the process with `code` now, doing what Python's exit does (waiting for threads, the
    `atexit` handlers: logging, SQLite connections, temporary folders, child processes) except
    freeing every module and object one by one: after a run that loaded Dagster, torch,
    transformers, great_expectations and MLflow that took ~2 s (`benchmarks/bench_orchestration.py`).
    Returns without exiting while a thread other than daemons still runs (the ordinary exit
    waits for it)."""
    import atexit
    import os
    import threading

    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.current_thread()):
        return
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="artsim", description="Learn which artworks are similar across museum collections.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("materialize", help="materialise the whole asset graph for ARTSIM_ENV (default: the bundled sample)")
    run.add_argument("--source", action="append", choices=list(SOURCES), help="only these sources (repeatable)")
    run.add_argument("--force", action="store_true", help="recompute every asset, not only missing or stale ones")
    run.add_argument("--config", metavar="FILE.yaml", help="Dagster run config: `resources` (e.g. museum_api's rate) and asset `ops` config")
    run.add_argument("--wait", action="store_true",
                     help="when another materialize runs on this ARTSIM_HOME, wait for it (default: exit with code 75)")
    run.add_argument("--verbose", action="store_true", help="Dagster's event lines on the terminal too (they are always in the run log)")
    sim = sub.add_parser("similar", help="the works most similar to one artwork (or to a local image)")
    sim.add_argument("artwork_id", nargs="?", help="e.g. met:436535 or smk:KMS1")
    sim.add_argument("-k", type=int, default=10, help="how many works (default 10)")
    sim.add_argument("--source", choices=list(SOURCES), help="only works held by this museum")
    sim.add_argument("--image", metavar="FILE", help="search with a local image instead of an artwork id")
    sim.add_argument("--json", action="store_true", help="print a JSON list")
    add_search_parser(sub)
    emb = sub.add_parser("embed", help="image files as vectors in the index's space (JSON lines on stdout, or Parquet)")
    emb.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    emb.add_argument("--raw", action="store_true", help="the backbone's vectors, without the trained head")
    emb.add_argument("--out", metavar="FILE", help="write a Parquet file (path, model_id, vector) instead of JSON lines")
    serve = sub.add_parser("serve", help="the similar-works browser and curator feedback web app")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    serve.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)

    _prepare_environment()
    if args.command == "materialize":
        try:
            run_config = load_run_config(args.config)
        except ValueError as exc:
            print(f"artsim: {exc}", file=sys.stderr)
            return 2
        what = "every asset" if args.force else "new records, then whatever is missing or stale"
        print(f"artsim: materialising {what} (ARTSIM_ENV={settings.artsim_env()}, ARTSIM_HOME={settings.artsim_home()})", flush=True)
        from artsim_pipeline.runlock import RunLockBusy, run_lock

        def waiting(holder: str) -> None:
            print(f"artsim: waiting for {holder} to finish on this ARTSIM_HOME ...", file=sys.stderr, flush=True)

        try:
            with run_lock(settings.artsim_home(), wait=args.wait, on_wait=waiting):
                report = materialize_all(args.source, force=args.force, run_config=run_config, verbose=args.verbose,
                                         on_stage=lambda stage: print(f"  {stage.line()}", flush=True))
        except RunLockBusy as exc:
            print(f"artsim: {exc}", file=sys.stderr)
            return 75  # EX_TEMPFAIL: try again later
        print_summary(report)
        if argv is None:  # the program itself, not a caller in this process (a test)
            exit_without_teardown(0)
        return 0
    if args.command == "similar":
        return run_similar(args, parser)
    if args.command == "search":
        return run_search(args)
    if args.command == "embed":
        return run_embed(args)
    if args.command == "serve":
        from artsim_pipeline.web import serve as serve_app

        print(f"artsim: serving http://{args.host}:{args.port}/ over {settings.artsim_home()}", flush=True)
        from artsim_pipeline.resources.environment import build_resources

        resources = build_resources(settings.artsim_env())
        serve_app(settings.artsim_home(), host=args.host, port=args.port, storage=resources["storage"], tables=resources["tables"])
        return 0
    parser.error(f"unknown command {args.command}")
    return 2


def run_similar(args, parser) -> int:
    import json

    from artsim_pipeline.core.search import UnknownArtworkError
    from artsim_pipeline.service import ImageQueryError, NotBuiltError, SimilarityService

    if bool(args.artwork_id) == bool(args.image):
        parser.error("give either an ARTWORK_ID or --image FILE")
    if args.k < 1:
        parser.error("-k must be at least 1")
    service = SimilarityService.for_environment()
    try:
        if args.image:
            print(f"embedding {args.image} ...", file=sys.stderr, flush=True)
            results = service.similar_to_image(args.image, args.k, args.source)
        else:
            results = service.similar(args.artwork_id, args.k, args.source)
    except UnknownArtworkError:
        print(f"artsim: unknown artwork id {args.artwork_id!r} (ids look like met:436535 or smk:KMS1)", file=sys.stderr)
        return 2
    except ImageQueryError as exc:
        print(f"artsim: {exc}", file=sys.stderr)
        return 2
    except NotBuiltError as exc:
        print(f"artsim: {exc}", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=2))
        return 0
    query = args.artwork_id or args.image
    print(f"works most similar to {query}" + (f" held by {args.source}" if args.source else "") + ":")
    for rank, r in enumerate(results, start=1):
        makers = ", ".join(r.get("artists") or []) or "unknown maker"
        print(f"{rank:>3}. {r['score']:.3f}  [{r['source']}] {r['title'] or '(untitled)'} — {makers}\n        {r['artwork_id']}  {r['landing_url']}")
    return 0


def run_embed(args) -> int:
    """Exit 0 when at least one image was embedded (unreadable ones are listed on stderr), 2 when
    none could be."""
    import json

    from artsim_pipeline.service import ImageQueryError, NotBuiltError, SimilarityService

    print(f"embedding {len(args.images)} image(s) ...", file=sys.stderr, flush=True)
    try:
        rows, failures = SimilarityService.for_environment().embed_image_files(args.images, raw=args.raw)
    except ImageQueryError as exc:
        print(f"artsim: {exc}", file=sys.stderr)
        return 2
    except NotBuiltError as exc:
        print(f"artsim: {exc}", file=sys.stderr)
        return 3
    for path, reason in failures:
        print(f"artsim: cannot embed {path}: {reason}", file=sys.stderr)
    if not rows:
        print("artsim: no image could be embedded", file=sys.stderr)
        return 2
    if args.out:
        import polars as pl

        frame = pl.DataFrame({"path": [r["path"] for r in rows], "model_id": [r["model_id"] for r in rows],
                              "vector": [r["vector"].tolist() for r in rows]},
                             schema={"path": pl.String, "model_id": pl.String, "vector": pl.List(pl.Float32)})
        frame.write_parquet(args.out)
        print(f"wrote {frame.height} vectors ({len(rows[0]['vector'])}-d, {rows[0]['model_id']}) to {args.out}", file=sys.stderr)
        return 0
    for r in rows:
        print(json.dumps({"path": r["path"], "model_id": r["model_id"], "vector": [round(float(x), 7) for x in r["vector"]]}))
    return 0


def add_search_parser(sub) -> None:
    search = sub.add_parser("search", help="works ranked by meaning for some words (keywords, metadata and, with a CLIP backbone, pixels)")
    search.add_argument("text", nargs="*", help='what to look for, e.g. "mother holding her infant", a maker or an accession number')
    search.add_argument("-k", type=int, default=10, help="how many works (default 10)")
    search.add_argument("--source", choices=list(SOURCES), help="only works held by this museum")
    search.add_argument("--type", dest="kind", metavar="T", help="only this kind of work (classification or object type, any case)")
    search.add_argument("--from", dest="date_from", metavar="YEAR", help="only works dated in or after YEAR (negative: BC)")
    search.add_argument("--to", dest="date_to", metavar="YEAR", help="only works dated in or before YEAR")
    search.add_argument("--json", action="store_true", help="print a JSON list")


def run_search(args) -> int:
    import json

    from artsim_pipeline.core.text_search import SearchFilters, SearchQueryError, public
    from artsim_pipeline.service import NotBuiltError, SimilarityService

    query = " ".join(args.text).strip()
    try:
        if not query:
            raise SearchQueryError("the search text is empty: type some words, a maker or an accession number")
        if args.k < 1:
            raise SearchQueryError("-k must be at least 1")
        filters = SearchFilters.clean(args.source, args.kind, args.date_from, args.date_to)
        results = SimilarityService.for_environment().search(query, args.k, filters)
    except SearchQueryError as exc:
        print(f"artsim: {exc}", file=sys.stderr)
        return 2
    except NotBuiltError as exc:
        print(f"artsim: {exc}", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps([public(r) for r in results], ensure_ascii=False, indent=2))
        return 0
    print(f"works matching {query!r}:" if results else f"no works match {query!r}")
    for rank, r in enumerate(results, start=1):
        makers = ", ".join(r.get("artists") or []) or "unknown maker"
        why = ", ".join(f"{name} #{pos}" for name, pos in r["ranks"].items())
        print(f"{rank:>3}. {r['score']:.3f}  [{r['source']}] {r['title'] or '(untitled)'} — {makers}"
              f"\n        {r['artwork_id']}  {r.get('classification') or ''}  ({why})  {r['landing_url']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
