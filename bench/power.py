"""Power of the selection rule: how often a candidate with a given true gain is kept, by seeds.

The rule is auxsel.select.summarise itself (one-sided t tests over single-task and over the null
candidate, pooled sd, Holm at `select.level`), run on simulated screening numbers: per seed a
baseline b_s, the null's screen b_s + e, and K candidates' screens b_s + δ_k + e, with e ~ N(0, σ²)
independent per run. σ, the seed-to-seed sd of one screen's holdout metric around its paired
baseline, is read from finished runs (selection.json: the pooled gain sd), so the answer is for the
pool and dev size that was measured.

    python bench/power.py [--selection results/selection.json ...] [--sigma 0.02] [--gain 0.01]

Writes bench/results/power.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from auxsel.select import Rule, summarise  # noqa: E402

SEEDS = [3, 5, 8, 10, 15, 20, 30]


def measured_sigma(path: Path) -> tuple[float, str]:
    """σ of one screen around its seed's level: the median over candidates of the sd of their
    paired gains over the seeds, / √2 (a gain is the difference of two runs' metrics)."""
    sel = json.loads(path.read_text())
    rows = sel["candidates"]
    sd = statistics.median(r["gain_std"] for r in rows)
    return sd / math.sqrt(2), (f"measured: target {sel['target']}, {len(rows)} candidates, {rows[0]['n_seeds']} seeds, "
                               f"{sel['split']}; median gain sd {sd:.4f}")


def power(sigma: float, gain: float, seeds: int, k: int, rule: Rule, floor: float, reps: int, rng) -> dict[str, float]:
    """P(keep the candidate with true gain `gain`) and P(keep any of the k-1 useless ones)."""
    keep = false = 0
    for _ in range(reps):
        base = {s: 0.7 + rng.normal(0, sigma) for s in range(seeds)}
        null = {s: 0.7 + rng.normal(0, sigma) for s in range(seeds)}
        dev = {"good": {s: 0.7 + gain + rng.normal(0, sigma) for s in range(seeds)}}
        for j in range(k - 1):
            dev[f"useless{j}"] = {s: 0.7 + rng.normal(0, sigma) for s in range(seeds)}
        weight = {a: {s: 1.0 for s in range(seeds)} for a in dev}
        rows = {r["aux"]: r for r in summarise(base, dev, weight, rule, sd_floor=floor, null_dev=null)}
        keep += rows["good"]["selected"]
        false += any(rows[a]["selected"] for a in rows if a != "good")
    return {"power": keep / reps, "false_keep": false / reps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--selection", type=Path, nargs="*", default=[], help="selection.json files to read σ from")
    ap.add_argument("--sigma", type=float, nargs="*", default=[], help="σ values to add")
    ap.add_argument("--gain", type=float, nargs="+", default=[0.01, 0.02, 0.03])
    ap.add_argument("--candidates", type=int, default=5)
    ap.add_argument("--reps", type=int, default=400)
    ap.add_argument("--floor", type=float, default=0.001, help="sd floor (default: one of 1,000 holdout examples)")
    args = ap.parse_args()
    sigmas = [measured_sigma(p) for p in args.selection] + [(s, "given (a steady candidate: left_more's gain over "
                                                                 "the null had sd 0.009 = √2 × 0.0064)") for s in args.sigma]
    rule = Rule()  # the defaults of params.yaml's select section
    rng = np.random.default_rng(0)
    out = {"gains": args.gain, "candidates": args.candidates, "level": rule.level, "rows": []}
    args_text = " ".join(a if "/" not in a else "<finished run>/results/selection.json" for a in sys.argv[1:])
    lines = [f"`python bench/power.py {args_text}` — {datetime.now():%Y-%m-%d %H:%M}; the selection rule "
             f"of auxsel.select (level {rule.level}, {rule.variance} sd, Holm, over single-task and over the null) on "
             f"simulated screens: one candidate with the given true gain (over single-task and over the null) among "
             f"{args.candidates} ({args.candidates - 1} useless), {args.reps} repetitions per cell.", "",
             "| true gain | σ of one run's metric | source | " + " | ".join(f"{n} seeds" for n in SEEDS) + " |",
             "|---|---|---|" + "---|" * len(SEEDS)]
    for gain in args.gain:
        for sigma, source in sigmas:
            cells = []
            for n in SEEDS:
                p = power(sigma, gain, n, args.candidates, rule, args.floor, args.reps, rng)
                out["rows"].append({"gain": gain, "sigma": sigma, "source": source, "seeds": n, **p})
                cells.append(f"{p['power']:.2f} ({p['false_keep']:.2f})")
            lines.append(f"| {gain:+.3f} | {sigma:.4f} | {source} | " + " | ".join(cells) + " |")
    lines += ["", "Cells: P(the helpful candidate is kept) and, in brackets, P(any useless one is kept) — the "
              "family-wise error, held below the level 0.1."]
    text = "\n".join(lines) + "\n"
    print(text)
    res = ROOT / "bench" / "results"
    (res / "power.md").write_text(text)
    (res / "power.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
