"""Would another read-out of the same share fits rank the candidates better? Computed from kept runs.

    python bench/readout_alternatives.py                   # every pair of bench/results/ranking.json
    python bench/readout_alternatives.py --results ranking ranking_seeds20

`avil`'s importance is the mean over epochs of the fitted share λ = c_cand / Σ|c| (docs/methods.md,
"The share read-out"). The read-out does not steer training (the merge uses the fitted
coefficients), so every other way of aggregating the same per-epoch fits can be read off the runs
that bench_ranking.py kept (<project>/ranking/seed-N.json, the `avil` rows of every epoch): the same
screens, read differently. Each read-out is scored by bench_ranking's checks that depend on the
importance alone (positive control on top; shuffled below it; shuffled below the target's own level;
Spearman against the uniform reference). The dev check does not apply: training is the same.

Read-outs (per screen, over its epochs; "weight" = the candidate's value over the target's):
  mean         the shipped one: mean share
  median       median share (robust to epochs whose share saturates at ±1)
  first_half   mean share over the first half of the epochs (before the target overfits)
  gain_weighted  shares weighted by the fit's tempered gain over the epoch's start (epochs where
               the fit found something to read count more)
  target_learning  mean share over the epochs in which the target's own update lowered the fitting
               loss
  coefficient  mean fitted coefficient c_cand (the candidate's update in target-update lengths)
  ratio_of_sums  Σ c_cand / Σ Σ|c| over the epochs (the share of the summed coefficients)

Results: bench/results/readout_alternatives.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics as st
import sys
from datetime import datetime
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_ranking import PAIRS, importance, machine, spearman  # noqa: E402

Epochs = list[tuple[dict, dict]]  # per epoch: (the candidate's row, the target's row)


def _weighted(E: Epochs, w: list[float]) -> tuple[float, float]:
    if sum(w) <= 0:  # nothing to weigh by: every epoch alike
        w = [1.0] * len(E)
    return (sum(c["share"] * x for (c, _), x in zip(E, w)) / sum(w),
            sum(t["share"] * x for (_, t), x in zip(E, w)) / sum(w))


def _ratio_of_sums(E: Epochs) -> tuple[float, float]:
    total = sum(abs(c["coef"]) + abs(t["coef"]) for c, t in E) or 1.0
    return sum(c["coef"] for c, _ in E) / total, sum(t["coef"] for _, t in E) / total


READOUTS: dict[str, Callable[[Epochs], tuple[float, float]]] = {
    "mean": lambda E: (st.mean(c["share"] for c, _ in E), st.mean(t["share"] for _, t in E)),
    "median": lambda E: (st.median(c["share"] for c, _ in E), st.median(t["share"] for _, t in E)),
    "first_half": lambda E: READOUTS["mean"](E[: max(1, len(E) // 2)]),
    "gain_weighted": lambda E: _weighted(E, [max(0.0, c["dev_loss_before"] - c["dev_loss_after"]) for c, _ in E]),
    "target_learning": lambda E: _weighted(E, [float(c["dev_loss_own"] < c["dev_loss_before"]) for c, _ in E]),
    "coefficient": lambda E: (st.mean(c["coef"] for c, _ in E), st.mean(t["coef"] for _, t in E)),
    "ratio_of_sums": _ratio_of_sums,
}


def epochs(run: dict, aux: str) -> Epochs:
    """The (candidate, target) rows of each epoch of one share-read-out screen."""
    rows = run["rows"]
    target = rows[0]["task"]
    out = []
    for e in sorted({r["epoch"] for r in rows}):
        here = {r["task"]: r for r in rows if r["epoch"] == e}
        out.append((here[aux], here[target]))
    return out


def score(seeds_out: list[dict], cands: list[str], pos: str, shuf: str, readout: str) -> dict:
    """bench_ranking's importance checks for one read-out of the `avil` screens."""
    n = len(seeds_out)
    vals = {a: [READOUTS[readout](epochs(s[a]["avil"], a)) for s in seeds_out] for a in cands}
    imp = {a: [v[0] for v in vs] for a, vs in vals.items()}
    ref = {a: st.mean(s[a]["uniform"]["test"] - s["single"]["test"] for s in seeds_out) for a in cands}
    top = sum(max(cands, key=lambda a: imp[a][i]) == pos for i in range(n))
    below_pos = sum(imp[shuf][i] < imp[pos][i] for i in range(n))
    below_target = sum(c < t for c, t in vals[shuf])
    rho = spearman([st.mean(imp[a]) for a in cands], [ref[a] for a in cands])
    checks = {"positive_top": top >= n - 1, "shuffled_below_positive": below_pos == n,
              "shuffled_below_target": below_target >= n - 1, "spearman": rho >= 0.8 - 1e-9}
    return {"importance": {a: st.mean(v) for a, v in imp.items()}, "positive_top": top,
            "shuffled_below_positive": below_pos, "shuffled_below_target": below_target, "spearman": rho,
            "checks": checks, "pass": all(checks.values())}


def check_mean_is_shipped(seeds_out: list[dict], cands: list[str]) -> None:
    """The "mean" read-out rebuilt from the rows must be the importance the runs recorded."""
    for s in seeds_out:
        for a in cands:
            rebuilt = READOUTS["mean"](epochs(s[a]["avil"], a))[0]
            recorded = importance("avil", s[a]["avil"], a)
            if abs(rebuilt - recorded) > 1e-5:
                raise SystemExit(f"seed {s['seed']} {a}: mean share {rebuilt} is not the recorded importance {recorded}")


def evaluate(entry: dict, key: str) -> dict:
    pair = key.removesuffix("-frozen")
    spec = PAIRS[pair]
    project, cands = Path(entry["project"]), entry["candidates"]
    files = [project / "ranking" / f"seed-{s}.json" for s in entry["seeds"]]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise SystemExit(f"({key}): the kept runs are gone ({missing[0]} …): rerun `{entry['command']}` first")
    seeds_out = [json.loads(f.read_text()) for f in files]
    check_mean_is_shipped(seeds_out, cands)
    return {"name": entry["name"], "seeds": entry["seeds"], "runs": entry["command"], "project": str(project),
            "readouts": {r: score(seeds_out, cands, spec["positive"], spec["shuffled"], r) for r in READOUTS}}


def table(results: dict) -> str:
    lines = []
    for key, r in results.items():
        n = len(r["seeds"])
        lines += [f"### ({key}) {r['name']} — {n} seeds", "", f"Runs: `{r['runs']}`", "",
                  f"| read-out | positive on top (≥ {n - 1}/{n}) | shuffled below positive ({n}/{n}) | "
                  f"shuffled below the target (≥ {n - 1}/{n}) | Spearman vs reference (≥ 0.8) | all four |",
                  "|---|---|---|---|---|---|"]
        for name, s in r["readouts"].items():
            lines.append(f"| {'**mean** (shipped)' if name == 'mean' else name} | {s['positive_top']}/{n} | "
                         f"{s['shuffled_below_positive']}/{n} | {s['shuffled_below_target']}/{n} | "
                         f"{s['spearman']:+.2f} | {'pass' if s['pass'] else 'FAIL'} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", nargs="+", default=["ranking"],
                    help="bench/results/<name>.json of bench_ranking runs whose kept projects to read")
    ap.add_argument("--out", default="readout_alternatives")
    args = ap.parse_args()
    results = {}
    for name in args.results:
        for key, entry in json.loads((ROOT / "bench" / "results" / f"{name}.json").read_text())["pairs"].items():
            if "avil" in entry["methods"]:
                tag = key if name == "ranking" else f"{key} [{len(entry['seeds'])} seeds]"
                results[tag] = evaluate(entry, key)
    passes = {r: sum(v["readouts"][r]["pass"] for v in results.values()) for r in READOUTS}
    out = ROOT / "bench" / "results" / args.out
    cmd = "python bench/readout_alternatives.py" + (f" --results {' '.join(args.results)}" if args.results != ["ranking"] else "")
    out.with_suffix(".json").write_text(json.dumps({"command": cmd, "date": f"{datetime.now():%Y-%m-%d %H:%M}",
                                                    "machine": machine("cpu"), "passes": passes, "pairs": results}, indent=1))
    head = (f"Generated by `{cmd}` — {datetime.now():%Y-%m-%d %H:%M}; {machine('cpu')}. The same `avil` screens "
            "(kept by bench_ranking.py) read out seven ways; the dev check does not apply (training is the same).\n\n"
            "| read-out | tables passing all four checks | which |\n|---|---|---|\n"
            + "".join(f"| {r} | {k}/{len(results)} | "
                      + (", ".join(t for t, v in results.items() if v["readouts"][r]["pass"]) or "none") + " |\n"
                      for r, k in passes.items()) + "\n")
    text = head + table(results)
    out.with_suffix(".md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
