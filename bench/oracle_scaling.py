"""How the pipeline's compute compares with the exhaustive search as the pool grows (a projection).

Reads the per-run training seconds that `bench_oracle.py` measured (bench/results/oracle_runs.json:
single-task, pairwise αVIL screens and every subset of the 4-candidate pool under uniform and αVIL)
and fits run time = a + b·(number of auxiliaries) per method by least squares. It then prices,
for n candidates and the same 3 seeds:

  exhaustive search = Σ_k C(n, k) · (a + b·k) per seed (every subset, the empty one included)
  pipeline          = baseline + n pairwise αVIL screens + training a one-candidate selection, per seed

At n = 4 the model must reproduce the measured fractions (bench/results/oracle.md); larger n is
extrapolation and is labelled as such.

    python bench/oracle_scaling.py
"""

from __future__ import annotations

import argparse
import json
import math
import statistics as st
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    xs, ys = zip(*points)
    mx, my = st.mean(xs), st.mean(ys)
    b = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[4, 5, 6, 8])
    args = ap.parse_args()
    runs = json.loads((RESULTS / "oracle_runs.json").read_text())
    by: dict[str, list[tuple[int, float]]] = {}
    for key, run in runs.items():
        method, subset, _seed = key.split("|")
        by.setdefault(method, []).append((0 if subset == "(none)" else len(subset.split("+")), run["seconds"]))
    seeds = len({k.split("|")[2] for k in runs})
    single = st.mean(s for _, s in by["single"])
    screen = st.mean(s for n, s in by["avil"] if n == 1)
    lines = [f"`python bench/oracle_scaling.py` — run time fitted as a + b·k on {len(runs)} measured runs "
             f"(bench/results/oracle_runs.json), {seeds} seeds; n = 4 is the measured pool (compare bench/results/oracle.md: 0.34–0.35 uniform, 0.26–0.27 αVIL), larger n extrapolated.", "",
             "| method for the final/exhaustive runs | fit a + b·k | candidates n | exhaustive (s) | pipeline (s) | fraction |",
             "|---|---|---|---|---|---|"]
    for method in ("uniform", "avil"):
        a, b = fit(by["single"] + by[method])
        for n in args.sizes:
            exhaustive = seeds * sum(math.comb(n, k) * (a + b * k) for k in range(n + 1))
            pipeline = seeds * (single + n * screen + a + b)
            tag = " (measured pool)" if n == 4 else " (projected)"
            lines.append(f"| {method} | {a:.1f} + {b:.1f}·k s | {n}{tag} | {exhaustive:.0f} | {pipeline:.0f} | **{pipeline / exhaustive:.2f}** |")
    table = "\n".join(lines)
    print(table)
    (RESULTS / "oracle_scaling.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
