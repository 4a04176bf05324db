"""Benchmark: how much the two-stage `ann_index` (#18 item 5) changes the similar works, on real
vectors: a home's `artwork_vectors` (e.g. a `make run` home of the sample, the default model's
1,280-d vectors).

Builds the full-dimensional index (as before) and a two-stage one per `--search-dims` /
`--oversample` setting over the same vectors, then prints for each: recall@10 against exact search
(every work a query, up to `--sample`), how many works' top-10 similar works (the work itself
left out, as `/api/similar` answers) are identical to the full index's, in order and as a set,
how many neighbours were replaced and by how much they differ in score, and the share of the
vectors' energy the projection keeps.

    .venv/bin/python benchmarks/bench_two_stage.py --home /tmp/run-home
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def top10(index, ids: list[str], x: np.ndarray) -> list[tuple[list[str], np.ndarray]]:
    out = []
    for i, artwork_id in enumerate(ids):
        found, scores = index.query(x[i], 10, exclude_ids=[artwork_id], num_threads=1)
        out.append((list(found[0]), scores[0]))
    return out


def main() -> None:
    from artsim_pipeline.core.ann import AnnConfig, build_index, normalize, recall_vs_exact
    from artsim_pipeline.core.ann.reduction import fit_projection

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", required=True, help="an ARTSIM_HOME with artwork_vectors (read only)")
    parser.add_argument("--search-dims", default="64,128,256")
    parser.add_argument("--oversample", default="4,8")
    parser.add_argument("--sample", type=int, default=5000, help="recall queries")
    args = parser.parse_args()
    table = pl.read_parquet(Path(args.home) / "storage" / "artwork_vectors.parquet")
    ids, x = table["artwork_id"].to_list(), normalize(np.stack(table["vector"].to_numpy()))
    print(f"{len(ids):,} works, {x.shape[1]}-d vectors ({table['vector_source'][0]})")
    full = build_index(ids, x, AnnConfig(num_threads=1))
    baseline = top10(full, ids, x)
    print(f"full-dimensional: recall@10 against exact {recall_vs_exact(full, ids, x, sample=args.sample):.4f}")
    for search_dim in (int(d) for d in args.search_dims.split(",")):
        energy = float(((x @ fit_projection(x, search_dim).T) ** 2).sum() / len(x))
        index = build_index(ids, x, AnnConfig(num_threads=1, search_dim=search_dim))
        for oversample in (int(o) for o in args.oversample.split(",")):
            index.config = AnnConfig(num_threads=1, search_dim=search_dim, oversample=oversample)
            got = top10(index, ids, x)
            same_order = sum(a[0] == b[0] for a, b in zip(baseline, got))
            same_set = sum(set(a[0]) == set(b[0]) for a, b in zip(baseline, got))
            replaced = [(float(sa), float(sb)) for a, b in zip(baseline, got) for n, sa, nb, sb in zip(*a, *b)
                        if set(a[0]) != set(b[0]) and n not in b[0]]
            worst = max((sa - sb for sa, sb in replaced), default=0.0)
            print(f"search_dim {search_dim} (energy kept {energy:.3f}), oversample {oversample}: recall@10 against exact "
                  f"{recall_vs_exact(index, ids, x, sample=args.sample):.4f}; top-10 identical to the full index's "
                  f"{same_order}/{len(ids)} ({same_order / len(ids):.4f}), same set {same_set}; neighbours replaced "
                  f"{len(replaced)} of {10 * len(ids)}, largest score difference at a replaced place {worst:.1e}")


if __name__ == "__main__":
    main()
