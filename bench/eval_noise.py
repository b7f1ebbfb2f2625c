"""How much of a paired gain's seed-to-seed spread is the judging set's sampling noise?

A screen's paired gain (screen − baseline of the same seed, on the same examples) varies over
seeds for two reasons: training (another seed trains another model: variance τ², the same
however many examples judge it) and evaluation (a finite judging set: variance c/n for n
examples). Finished runs judge every gain twice, on the dev holdout (n_h examples) and on test
(n_t), from the same trained models, so the two variances give both parts:

    var_h = τ² + c/n_h,   var_t = τ² + c/n_t    (means over the pool's candidates and the null)

From them: the gain's sd and the selection rule's power for a +1-point candidate at a larger
judging set, with the rule itself (`bench/power.py`'s simulation of auxsel.select at its
defaults), 5 seeds. Read only: the runs are the pipeline's (e.g. the projects bench_selection.py
keeps, or a default run).

    python bench/eval_noise.py <finished project> [<finished project> ...]

Writes bench/results/eval_noise.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics as st
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

SIZES = [1000, 2000, 5000, 10000, 20000]


def metrics(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())["metrics"]


def decompose(project: Path) -> dict:
    params = yaml.safe_load((project / "params.yaml").read_text())
    target, seeds = params["target"], params["seeds"]
    meta = json.loads((project / "data/prepared" / target / "meta.json").read_text())
    metric = meta["metric"]
    counts = {k: sum(v) for k, v in meta["class_counts"].items()}
    n_h = int(round(params["train"]["dev_holdout"] * counts["dev"]))
    n_t = counts["test"]
    var = {"holdout": [], "test": []}
    per = {}
    for screen in sorted((project / "results/screen").iterdir()):
        gains = {"holdout": [], "test": []}
        for s in seeds:
            base, run = metrics(project / f"results/baseline/{target}/seed-{s}"), metrics(screen / f"seed-{s}")
            for split in gains:
                gains[split].append(run[split][metric] - base[split][metric])
        per[screen.name] = {k: [st.mean(v), st.stdev(v)] for k, v in gains.items()}
        for split in var:
            var[split].append(st.variance(gains[split]))
    vh, vt = st.mean(var["holdout"]), st.mean(var["test"])
    # two equations, two unknowns; a noisy pair can give a negative part: clamp it at 0
    c = max((vh - vt) / (1 / n_h - 1 / n_t), 0.0) if n_h != n_t else 0.0
    tau2 = max(vh - c / n_h, 0.0)
    return {"project": str(project), "target": target, "metric": metric, "seeds": len(seeds), "n_holdout": n_h,
            "n_test": n_t, "screens": len(per), "var_holdout": vh, "var_test": vt, "tau2": tau2, "c": c,
            "eval_share_at_holdout": (c / n_h) / (tau2 + c / n_h) if tau2 + c / n_h > 0 else float("nan"),
            "per_screen": per}


def main() -> None:
    from power import power

    from auxsel.select import Rule

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("projects", type=Path, nargs="+")
    ap.add_argument("--gain", type=float, default=0.01)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--candidates", type=int, default=5)
    ap.add_argument("--reps", type=int, default=300)
    args = ap.parse_args()
    rule, rng = Rule(), np.random.default_rng(0)
    rows = [decompose(p.resolve()) for p in args.projects]
    lines = [f"`python bench/eval_noise.py <finished projects>` — {datetime.now():%Y-%m-%d %H:%M}. Paired gains "
             f"(screen − baseline, same seed, same examples) over the seeds, judged on the dev holdout and on test by "
             f"the same models; variances are means over each pool's screens (candidates and the null). τ²: training "
             f"noise; c/n: the judging set's (n examples). Power: P(keep a candidate of true gain {args.gain:+.3f} among "
             f"{args.candidates}) under auxsel.select's defaults at {args.seeds} seeds (bench/power.py's simulation, "
             f"{args.reps} repetitions, σ = gain sd / √2).", "",
             "| target (metric) | seeds × screens | n holdout / test | gain var: holdout / test | τ² (sd) | c | "
             "judging noise's share at the holdout | " + " | ".join(f"gain sd, power at n = {n:,}" for n in SIZES) + " |",
             "|---|---|---|---|---|---|---|" + "---|" * len(SIZES)]
    for r in rows:
        r["projection"] = []
        cells = []
        for n in SIZES:
            sd = math.sqrt(r["tau2"] + r["c"] / n)
            p = power(sd / math.sqrt(2), args.gain, args.seeds, args.candidates, rule, 0.001, args.reps, rng)
            r["projection"].append({"n": n, "gain_sd": sd, **p})
            cells.append(f"{sd:.4f}, {p['power']:.2f}")
        lines.append(f"| {r['target']} ({r['metric']}) | {r['seeds']} × {r['screens']} | {r['n_holdout']:,} / {r['n_test']:,} | "
                     f"{r['var_holdout']:.6f} / {r['var_test']:.6f} | {r['tau2']:.6f} ({math.sqrt(r['tau2']):.4f}) | "
                     f"{r['c']:.3f} | {r['eval_share_at_holdout']:.0%} | " + " | ".join(cells) + " |")
    lines += ["", "Two judging sizes per pool give τ² and c exactly but noisily (each variance is a mean over "
              "the pool's screens of a 5-seed variance); a clamp at 0 marks a pair whose test variance came out "
              "above the holdout's."]
    text = "\n".join(lines) + "\n"
    print(text)
    res = ROOT / "bench" / "results"
    (res / "eval_noise.md").write_text(text)
    (res / "eval_noise.json").write_text(json.dumps({"gain": args.gain, "seeds": args.seeds, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
