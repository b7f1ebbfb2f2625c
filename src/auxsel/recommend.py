"""Which final model to use: the selection's own (`fixed`) unless another trained final beats it on
the dev holdout, by a paired one-sided test with Holm's correction over the alternatives (at the
selection's family-wise level, `select.level`: the same error rate for moving away from the
selection's model as for keeping a useless candidate).

Why not simply the final with the best test metric: test is where the choice is judged, and a
choice made on it would be judged on the data that made it. Why not the best mean on the holdout
alone: with five finals and five seeds the largest of five noisy means is often a final no better
than the selection's (measured: on the frozen-encoder subjectivity pair the holdout-best pick was
0.8 points below `fixed` on test, its holdout lead +0.005 with a paired sd of 0.014). The holdout
is the half of the target's dev split that no final trains on or chooses its epoch with
(`train.dev_holdout`), so each final's holdout metric is an honest estimate; the paired
differences over seeds remove what the seed shares across finals (the initial weights, the
holdout examples). The default stays `fixed` - the model the selection was made for - and moves
only when the evidence is there, so a pool whose candidates help together more than any one
pairwise screen shows (every pair is screened alone) gets the better model, with the reason.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

from auxsel.select import holm

# the finals that train the selection, in the order one is taken as the reference
SELECTION_FINALS = ("fixed", "avil", "uniform_selected")


def by_seed(metric_rows: list[dict[str, Any]], metric: str, split: str) -> dict[str, dict[int, float]]:
    """{method: {seed: value}} of the target's `split` metric, from the final runs' metric rows."""
    out: dict[str, dict[int, float]] = {}
    for r in metric_rows:
        if r["split"] == split and r["metric"] == metric:
            out.setdefault(r["method"], {})[int(r["seed"])] = float(r["value"])
    return out


def recommend(metric_rows: list[dict[str, Any]], metric: str, level: float, sd_floor: float = 0.0,
              split: str = "holdout") -> dict[str, Any]:
    """The recommended final and the evidence for it.

    Returns {"method", "reference", "split", "level", "reason", "rows"}: `rows` has one entry per
    final (holdout mean, and for the alternatives the paired difference to the reference: mean, sd,
    one-sided p, Holm p, whether it beats the reference). `method` is the alternative with the
    highest holdout mean among those that beat the reference at family-wise `level`, else the
    reference; None when there is no holdout or no final of the selection."""
    values = by_seed(metric_rows, metric, split)
    methods = list(values)
    reference = next((m for m in SELECTION_FINALS if m in values), None)
    out: dict[str, Any] = {"method": None, "reference": reference, "split": split, "level": level, "rows": []}
    if not values:
        out["reason"] = f"no {split} {metric} in the final runs (train.dev_holdout is 0): nothing to choose on"
        return out
    if reference is None:
        out["reason"] = f"no final of the selection ({', '.join(SELECTION_FINALS)}) among the final methods"
        return out
    ref = values[reference]
    rows, pvals = [], []
    for m in methods:
        seeds = sorted(set(values[m]) & set(ref))
        row: dict[str, Any] = {"method": m, "mean": float(np.mean(list(values[m].values()))), "n_seeds": len(seeds)}
        if m != reference:
            d = np.array([values[m][s] - ref[s] for s in seeds], dtype=float)
            sd = float(d.std(ddof=1)) if len(d) > 1 else math.nan
            used = max(sd, sd_floor) if math.isfinite(sd) else math.nan
            mean = float(d.mean()) if len(d) else math.nan
            p = float(stats.t.sf(mean / (used / math.sqrt(len(d))), len(d) - 1)) if used and used > 0 else 1.0
            row.update(diff_mean=mean, diff_sd=sd, p_value=p)
            pvals.append(p)
        rows.append(row)
    adjusted = iter(holm(pvals))
    for row in rows:
        if row["method"] != reference:
            row["p_holm"] = next(adjusted)
            row["beats_reference"] = bool(row["diff_mean"] > 0 and row["p_holm"] <= level)
    winners = [r for r in rows if r.get("beats_reference")]
    out["rows"] = rows
    if winners:
        best = max(winners, key=lambda r: r["mean"])
        out["method"] = best["method"]
        out["reason"] = (f"{best['method']} beats {reference} on the {split} by {best['diff_mean']:+.4f} "
                         f"(paired over {best['n_seeds']} seeds, Holm p {best['p_holm']:.3f} <= {level:g})")
    else:
        closest = min((r for r in rows if r["method"] != reference), key=lambda r: r["p_value"], default=None)
        out["method"] = reference
        out["reason"] = (f"no final beats {reference} on the {split} at family-wise level {level:g}"
                         + (f" (closest: {closest['method']} {closest['diff_mean']:+.4f}, Holm p {closest['p_holm']:.3f})"
                            if closest else ""))
    return out
