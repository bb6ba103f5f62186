"""Transfer results with their uncertainty, ready for any page: seeds merged, rows compared.

The transfer stage writes, per benchmark and pre-trained checkpoint, every row's figures with
their seeds, fold spread, 95% bootstrap interval and bootstrap figures (``resampled``; see
:mod:`mmvideos.evaluation.uncertainty`). Here:

* :func:`merge_pretrain_seeds` makes one result of the transfers of one architecture pre-trained
  with several seeds (``pretrain.seeds``): the rows that depend on the pre-training (the
  pre-trained embedding and its 1-NN) get the mean over every (pre-training, transfer) seed, the
  sd over them and their values; the others (random init, log-mel statistics, released models)
  do not depend on the pre-training: the first seed's transfer computes them, the later seeds'
  only the pre-trained rows (``transfer(rows="pretrained")``). Bootstrap figures are averaged over seeds
  (every transfer on one benchmark draws the same resamples), so the interval is the seed mean's.
* :func:`comparisons` pairs the rows on each benchmark: the paired bootstrap interval of their
  difference and whether it covers 0 ("within noise").
* :func:`structured` is the table as data (``results.json``): benchmarks with their names and
  sizes, rows with per-metric value, interval, fold and seed spread, n, and the comparisons.
"""

from __future__ import annotations

import numpy as np

from mmvideos.benchmarks.naming import published_name
from mmvideos.evaluation.uncertainty import compare, decode, over_seeds

#: Rows whose features come from the pre-trained network (they vary with the pre-training seed).
PRETRAINED_ROWS = ("pretrained", "pretrained_1nn")


def _resampled(row: dict) -> dict[str, np.ndarray]:
    return {m: decode(text) for m, text in row.get("resampled", {}).items()}


def merge_pretrain_seeds(results: list[dict]) -> list[dict]:
    """One result per (benchmark, data name, architecture): several pre-training seeds merged (module docstring)."""
    groups: dict[tuple, list[dict]] = {}
    for result in results:
        groups.setdefault((result["benchmark"], result.get("name"), result.get("arch", "")), []).append(result)
    merged = []
    for group in groups.values():
        if len(group) == 1:
            merged.append(group[0])
            continue
        first = group[0]
        rows = []
        for row in first["rows"]:
            if row["model"] not in PRETRAINED_ROWS:
                rows.append(row)
                continue
            same = [next(r for r in result["rows"] if r["model"] == row["model"]) for result in group]
            rows.append(_merge_rows(same, [result.get("pretrain_seed") for result in group]))
        merged.append({**first, "rows": rows, "pretrain_seed": [result.get("pretrain_seed") for result in group]})
    return merged


def _merge_rows(rows: list[dict], pretrain_seeds: list) -> dict:
    metrics = [m for m in rows[0].get("ci", {})] or ["top1", "top5", "map", "auc"]
    seeds = [{"pretrain_seed": p, **s} for row, p in zip(rows, pretrain_seeds) for s in row.get("seeds", [row])]
    merged = over_seeds(seeds, [row["splits"] for row in rows if row.get("splits")],
                        [_resampled(row) for row in rows if row.get("resampled")], metrics)
    # a transfer written without splits or resampled figures keeps the first seed's spread and interval
    return {**rows[0], **merged, "seeds": seeds, "fold_sd": merged["fold_sd"] or rows[0].get("fold_sd", {}),
            "ci": merged["ci"] or rows[0].get("ci", {}), "n": {**rows[0].get("n", {}), "seeds": len(seeds)}}


def comparisons(result: dict, label) -> list[dict]:
    """Paired differences between the rows of one benchmark's result (:func:`uncertainty.compare`), rows named by
    ``label(model)``; empty where the transfer wrote no bootstrap figures."""
    rows = [row for row in result["rows"] if row.get("resampled")]
    distributions = {label(row["model"]): _resampled(row) for row in rows}
    figures = {label(row["model"]): {m: row[m] for m in distributions[label(row["model"])]} for row in rows}
    return compare(distributions, figures)


def structured(results: list[dict], label, metrics: tuple[str, ...]) -> dict:
    """``results.json``: the table as data, for any page to render (module docstring)."""
    benchmarks, rows, compared = [], {}, []
    for result in results:
        name = result.get("name") or published_name(result["benchmark"])
        where = {"benchmark": result["benchmark"], "name": name, "title": result.get("title") or name,
                 "paper": bool(result.get("paper")), "clips": result.get("clips"), "classes": result.get("classes"),
                 "bootstrap": result.get("bootstrap")}
        if where not in benchmarks:
            benchmarks.append(where)
        for row in result["rows"]:
            entry = rows.setdefault(label(row["model"], result.get("arch", "")), {"model": row["model"], "cells": {}})
            entry["cells"][name] = {
                m: {"value": row.get(m), "ci": row.get("ci", {}).get(m), "fold_sd": row.get("fold_sd", {}).get(m),
                    "seed_sd": row.get("seed_sd", {}).get(m), "seeds": [s[m] for s in row.get("seeds", []) if m in s]}
                for m in metrics} | {"n": row.get("n")}
        compared += [{"benchmark": name, **c}
                     for c in comparisons(result, lambda model, arch=result.get("arch", ""): label(model, arch))]
    return {"benchmarks": benchmarks, "rows": [{"label": k, **v} for k, v in rows.items()], "comparisons": compared}
