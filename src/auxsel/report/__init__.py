"""Tables of the pipeline's answer: what selection chose and what each final method scored."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np


def final_table(metric_rows: list[dict[str, Any]], metric: str, split: str = "test") -> list[dict[str, Any]]:
    """Per final method: mean, std and n of the target's `split` metric over seeds; best marked."""
    by_method: dict[str, list[float]] = defaultdict(list)
    aux: dict[str, str] = {}
    for r in metric_rows:
        if r["split"] == split and r["metric"] == metric:
            by_method[r["method"]].append(r["value"])
            aux[r["method"]] = r["auxiliaries"]
    rows = []
    for method, values in by_method.items():
        v = np.array(values)
        rows.append({
            "method": method,
            "auxiliaries": aux[method],
            "n_seeds": len(v),
            "mean": float(v.mean()),
            "std": float(v.std(ddof=1)) if len(v) > 1 else math.nan,
        })
    best = max((r["mean"] for r in rows), default=None)
    for r in rows:
        r["best"] = r["mean"] == best
    return rows


def format_final(rows: list[dict[str, Any]], metric: str) -> str:
    head = f"{'method':<18} {'test ' + metric:>20}  seeds  auxiliaries"
    lines = [head, "-" * len(head)]
    for r in rows:
        mark = " *" if r["best"] else "  "
        lines.append(f"{r['method']:<18} {r['mean']:>10.4f} ± {r['std']:<6.4f}{mark} {r['n_seeds']:>5}  {r['auxiliaries'] or '-'}")
    return "\n".join(lines)
