"""Screening results -> the selection: which candidates to keep, with what weight.

Per candidate the statistics are paired by seed: the gain of a seed is the target's dev metric
when screened with the candidate minus the single-task baseline's dev metric with the same seed,
so seed-to-seed variation of the target itself cancels. Only dev numbers are read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

COLUMNS = [
    "aux", "n_seeds", "weight_mean", "weight_std", "gain_mean", "gain_std", "gain_ci_low",
    "gain_ci_high", "selected", "rank", "reason",
]


@dataclass
class Rule:
    """Keep a candidate whose gain interval lies above `min_gain` and whose mean weight exceeds
    `min_weight`; rank by mean gain; keep at most `top_k`."""

    min_gain: float = 0.0
    min_weight: float = 0.0
    top_k: int | None = None
    confidence: float = 0.9


def interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Two-sided Student-t interval of the mean; a single seed gives (-inf, inf): no claim."""
    n = len(values)
    mean = float(np.mean(values))
    if n < 2:
        return -math.inf, math.inf
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * np.std(values, ddof=1) / math.sqrt(n))
    return mean - half, mean + half


def summarise(
    baseline_dev: dict[int, float],
    screen_dev: dict[str, dict[int, float]],
    screen_weight: dict[str, dict[int, float]],
    rule: Rule,
) -> list[dict[str, Any]]:
    """One row per candidate (COLUMNS), ranked; `selected` per the rule, `reason` says why."""
    rows = []
    for aux in screen_dev:
        seeds = sorted(set(screen_dev[aux]) & set(baseline_dev))
        gains = np.array([screen_dev[aux][s] - baseline_dev[s] for s in seeds])
        weights = np.array([screen_weight[aux][s] for s in seeds])
        low, high = interval(gains, rule.confidence)
        rows.append({
            "aux": aux,
            "n_seeds": len(seeds),
            "weight_mean": float(weights.mean()),
            "weight_std": float(weights.std(ddof=1)) if len(seeds) > 1 else 0.0,
            "gain_mean": float(gains.mean()),
            "gain_std": float(gains.std(ddof=1)) if len(seeds) > 1 else 0.0,
            "gain_ci_low": low,
            "gain_ci_high": high,
        })
    rows.sort(key=lambda r: (-r["gain_mean"], r["aux"]))
    kept = 0
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
        failed = []
        if not row["gain_ci_low"] > rule.min_gain:
            failed.append(f"gain interval low {row['gain_ci_low']:+.4f} <= min_gain {rule.min_gain:+.4f}")
        if not row["weight_mean"] > rule.min_weight:
            failed.append(f"weight {row['weight_mean']:.3f} <= min_weight {rule.min_weight:.3f}")
        if not failed and rule.top_k is not None and kept >= rule.top_k:
            failed.append(f"beyond top_k={rule.top_k}")
        row["selected"] = not failed
        if failed:
            row["reason"] = "; ".join(failed)
        else:
            kept += 1
            row["reason"] = f"gain interval above {rule.min_gain:+.4f} and weight above {rule.min_weight:.3f}"
    return [{k: r[k] for k in COLUMNS} for r in rows]
