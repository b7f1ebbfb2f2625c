"""Screening results -> the selection: which candidates to keep, with what weight.

Per candidate the statistics are paired by seed: the gain of a seed is the target's dev metric
when screened with the candidate minus the single-task baseline's dev metric with the same seed
(same initial weights, same sequence of target batches), so seed-to-seed variation of the target
itself cancels. Only dev numbers are read.

The decision is a stated test: per candidate, one-sided H0 "mean gain ≤ min_gain" against
H1 "mean gain > min_gain" (Student t), with the family-wise error rate over all candidates held
at `level` by Holm's step-down procedure — five useless candidates each tested at 5 % would keep
one of them up to 23 % of the time. Each candidate's gain has its own standard deviation by
default (`variance: candidate`): on the default pool the seed-to-seed sd of the gain over the null
ranged from 0.009 (the positive control) to 0.035 (a candidate that sometimes derails training),
so a pooled sd would let one unstable candidate hide a steady one (bench/README.md §8);
`variance: pooled` pools over the candidates (more degrees of freedom when they are alike). The sd
is floored at `sd_floor` so a candidate whose gains happen to be equal does not get a zero-width
interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from auxsel.errors import AuxselError

COLUMNS = [
    "aux", "n_seeds", "weight_mean", "weight_std", "gain_mean", "gain_std", "gain_se", "df", "t", "p_value",
    "p_holm", "gain_ci_low", "gain_ci_high", "null_gain_mean", "null_gain_se", "null_p_value", "null_p_holm",
    "selected", "rank", "reason",
]


@dataclass
class Rule:
    """Keep a candidate whose gain is above `min_gain` by a one-sided t test that survives Holm's
    correction at family-wise `level`, and whose mean weight exceeds `min_weight` (None: the null
    candidate's mean weight - the share a task that cannot help still gets; 0 without a null); rank by mean
    gain; keep at most `top_k`. `confidence` sets the two-sided interval that is reported."""

    min_gain: float = 0.0
    min_weight: float | None = None
    top_k: int | None = None
    confidence: float = 0.9
    level: float = 0.1
    variance: str = "candidate"
    sd_floor: float | None = None

    def __post_init__(self) -> None:
        if self.variance not in ("pooled", "candidate"):
            raise AuxselError(f"select.variance must be 'pooled' or 'candidate', not {self.variance!r}")
        if not 0 < self.level < 1:
            raise AuxselError(f"select.level must be in (0, 1), not {self.level}")
        if self.sd_floor is not None and not self.sd_floor >= 0:
            raise AuxselError(f"select.sd_floor must be >= 0, not {self.sd_floor}")


def holm(p: list[float]) -> list[float]:
    """Holm step-down adjusted p-values (reject where adjusted p ≤ level)."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out = [1.0] * m
    running = 0.0
    for j, i in enumerate(order):
        running = max(running, min(1.0, (m - j) * p[i]))
        out[i] = running
    return out


def _spread(gains: dict[str, np.ndarray], rule: Rule, floor: float) -> dict[str, tuple[float, int]]:
    """(standard deviation, degrees of freedom) of one seed's gain, per candidate."""
    if rule.variance == "pooled":
        ss = sum(float(((g - g.mean()) ** 2).sum()) for g in gains.values() if len(g) > 1)
        df = sum(len(g) - 1 for g in gains.values())
        sd = math.sqrt(ss / df) if df > 0 else math.nan
        return {a: (max(sd, floor) if df > 0 else math.nan, df) for a in gains}
    out = {}
    for a, g in gains.items():
        df = len(g) - 1
        out[a] = (max(float(g.std(ddof=1)), floor) if df > 0 else math.nan, df)
    return out


def gain_stats(reference: dict[int, float], screen_dev: dict[str, dict[int, float]], rule: Rule,
               floor: float) -> dict[str, dict[str, Any]]:
    """Per candidate: the paired gains over `reference` (per seed), their mean, standard error,
    degrees of freedom, one-sided t and p against min_gain, Holm-adjusted p, and the interval."""
    gains = {}
    for aux in screen_dev:
        seeds = sorted(set(screen_dev[aux]) & set(reference))
        gains[aux] = np.array([screen_dev[aux][s] - reference[s] for s in seeds], dtype=float)
    spread = _spread(gains, rule, floor)
    out = {}
    for aux, g in gains.items():
        n = len(g)
        sd, df = spread[aux]
        mean = float(g.mean()) if n else math.nan
        if df > 0 and n > 0:
            se = sd / math.sqrt(n)
            t = (mean - rule.min_gain) / se if se > 0 else (math.inf if mean > rule.min_gain else -math.inf)
            p = float(stats.t.sf(t, df))
            half = float(stats.t.ppf(0.5 + rule.confidence / 2, df)) * se
            low, high = mean - half, mean + half
        else:  # one seed: nothing can be claimed (written to JSON as null)
            se, t, p, low, high = math.inf, math.nan, 1.0, -math.inf, math.inf
        out[aux] = {"n_seeds": n, "gain_mean": mean, "gain_std": float(g.std(ddof=1)) if n > 1 else 0.0,
                    "gain_se": se, "df": df, "t": t, "p_value": p, "gain_ci_low": low, "gain_ci_high": high}
    for aux, adj in zip(out, holm([r["p_value"] for r in out.values()])):
        out[aux]["p_holm"] = adj
    return out


def summarise(
    baseline_dev: dict[int, float],
    screen_dev: dict[str, dict[int, float]],
    screen_weight: dict[str, dict[int, float]],
    rule: Rule,
    sd_floor: float = 0.0,
    null_dev: dict[int, float] | None = None,
    null_weight: float | None = None,
) -> list[dict[str, Any]]:
    """One row per candidate (COLUMNS), ranked; `selected` per the rule, `reason` names every
    condition that failed. `sd_floor` is used when the rule has none (e.g. one dev example's worth
    of the metric). With `null_dev` (the null candidate's screens, per seed) the test is against the
    null - the reference that shares the multitask training's dynamics, so its paired gains are far
    less noisy than those over single-task (bench/README.md §8) - and the mean gain over
    single-task must still exceed min_gain (a candidate that beats a harmful null but not the
    target alone is not kept); the p-values over single-task are reported either way."""
    floor = rule.sd_floor if rule.sd_floor is not None else sd_floor
    if rule.min_weight is not None:
        min_w, min_w_name = rule.min_weight, "min_weight"
    elif null_weight is not None:
        min_w, min_w_name = null_weight, "the null candidate's weight"
    else:
        min_w, min_w_name = 0.0, "0 (no null candidate)"
    single = gain_stats(baseline_dev, screen_dev, rule, floor)
    null = gain_stats(null_dev, screen_dev, rule, floor) if null_dev is not None else None
    rows = []
    for aux, st in single.items():
        w = np.array([screen_weight[aux][s] for s in sorted(screen_weight[aux])], dtype=float)
        row = {"aux": aux, **st, "weight_mean": float(w.mean()), "weight_std": float(w.std(ddof=1)) if len(w) > 1 else 0.0}
        nul = null[aux] if null is not None else {}
        row.update(null_gain_mean=nul.get("gain_mean", math.nan), null_gain_se=nul.get("gain_se", math.nan),
                   null_p_value=nul.get("p_value", math.nan), null_p_holm=nul.get("p_holm", math.nan))
        rows.append(row)
    rows.sort(key=lambda r: (-r["gain_mean"], r["aux"]))
    kept = 0
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
        failed = []
        if row["df"] < 1:
            failed.append("one seed: no test possible (give select >= 2 seeds)")
        elif null is None:  # no null screens: the test is against single-task
            if not row["p_holm"] <= rule.level:
                failed.append(f"gain {row['gain_mean']:+.4f} not above min_gain {rule.min_gain:+.4f} at family-wise "
                              f"level {rule.level:g} (Holm p {row['p_holm']:.3f})")
        else:
            if not row["null_p_holm"] <= rule.level:
                failed.append(f"gain over the null candidate {row['null_gain_mean']:+.4f} not above min_gain at "
                              f"family-wise level {rule.level:g} (Holm p {row['null_p_holm']:.3f})")
            if not row["gain_mean"] > rule.min_gain:
                failed.append(f"mean gain over single-task {row['gain_mean']:+.4f} <= min_gain {rule.min_gain:+.4f}")
        if not row["weight_mean"] > min_w:
            failed.append(f"weight {row['weight_mean']:.3f} <= {min_w_name} {min_w:.3f}")
        if not failed and rule.top_k is not None and kept >= rule.top_k:
            failed.append(f"beyond top_k={rule.top_k}")
        row["selected"] = not failed
        if failed:
            row["reason"] = "; ".join(failed)
        else:
            kept += 1
            if null is None:
                row["reason"] = (f"gain above {rule.min_gain:+.4f} (Holm p {row['p_holm']:.3f} <= {rule.level:g}) "
                                 f"and weight above {min_w_name} {min_w:.3f}")
            else:
                row["reason"] = (f"gain over the null above {rule.min_gain:+.4f} (Holm p {row['null_p_holm']:.3f} <= "
                                 f"{rule.level:g}), mean gain over single-task {row['gain_mean']:+.4f} and weight above "
                                 f"{min_w_name} {min_w:.3f}")
    return [{k: r[k] for k in COLUMNS} for r in rows]
