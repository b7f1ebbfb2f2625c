"""How long should a screen train? Every length, and every stopping rule, from one long run per seed.

    python bench/screen_length.py --pairs a b e --seeds 0 1 ... 15 --epochs 24
    python bench/screen_length.py --pairs e --reuse e=<finished project> --epochs 24

Each pair's baseline, null and candidate screens run once for `--epochs` epochs with `train.trace`
(the target's holdout and test are evaluated after every epoch into history.parquet). The learning
rate is constant and nothing but the loop reads `train.epochs`, so the first L epochs of such a run
are an L-epoch run: its best epoch is the best fit-half dev epoch among the first L, and its
holdout and test are the traced rows at that epoch; its screened weight is the weight after epoch L.
(The check column compares the L = 10 read with a 10-epoch project's runs, where one is given.)
Every rule below is read from the same runs, then auxsel.select's default rule is applied to random
k-seed subsets as bench/selection_power.py does:

- `fixed L`: every run of every seed trains L epochs (today's default is `train.epochs`).
- `patience P`: each run stops on its own after P epochs without a better fit-half dev metric
  (train.patience), at most `--epochs`.
- `baseline P ×f`: the single-task baseline stops at patience P; that seed's screens (and the null)
  train f × as many epochs as the baseline did (at most `--epochs`), so a target that is still
  learning gets longer screens and one that has plateaued shorter ones.
- `converged τ ×f`: every run of a seed trains f × the epochs its single-task baseline needed to
  bring the target's running training loss below τ (at most `--epochs`): the target alone has fitted
  its training set. (A screen's own target loss does not fall that far: its merges keep moving it.)

The dev examples' shared variance (`select.dev_variance`) is not measured per epoch (a run keeps
its holdout answers for its best epoch only), so every rule here is judged by the seeds alone, as the
default rule is.

Results: bench/results/screen_length.{md,json,png}; pairs merge into what is there.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

from bench_args import add_pair_args, reuse_map  # noqa: E402
from bench_ranking import PAIRS, pair_params  # noqa: E402
from bench_selection import cpu_model  # noqa: E402
from selection_power import decide, project_head, reference, resample, saved_results, screened_pairs  # noqa: E402

from auxsel.params import NULL  # noqa: E402
from auxsel.select import Rule  # noqa: E402

SIZES = [3, 5, 8]


def default_rules(epochs: int, default: int) -> list[dict]:
    fixed = sorted({5, 8, default, 12, 15, 20, epochs} & set(range(1, epochs + 1)))
    return ([{"kind": "fixed", "epochs": n} for n in fixed]
            + [{"kind": "patience", "patience": p} for p in (3, 5)]
            + [{"kind": "baseline", "patience": p, "factor": f} for p in (3, 5) for f in (1.0, 2.0)]
            + [{"kind": "converged", "loss": t, "factor": f} for t in (0.01,) for f in (1.0, 1.5)])


def rule_label(rule: dict) -> str:
    if rule["kind"] == "fixed":
        return f"fixed {rule['epochs']}"
    if rule["kind"] == "patience":
        return f"patience {rule['patience']}"
    if rule["kind"] == "baseline":
        return f"baseline {rule['patience']} ×{rule['factor']:g}"
    return f"converged {rule['loss']:g} ×{rule['factor']:g}"


def read_run(folder: Path, target: str) -> dict:
    """One run folder's per-epoch curve (see curve_from_rows)."""
    hist = pq.read_table(folder / "history.parquet").to_pylist()
    weights = pq.read_table(folder / "weights.parquet").to_pylist() if (folder / "weights.parquet").exists() else []
    try:
        return curve_from_rows(hist, weights, target)
    except ValueError as e:
        raise SystemExit(f"{folder}: {e}") from None


def curve_from_rows(history: list[dict], weights: list[dict], target: str) -> dict:
    """Per epoch: the fit-half dev metric, the traced holdout and test metrics, the target's running
    training loss, and the weights — from a run's history and weight rows (the artifacts' or a
    RunResult's)."""
    curve = {"train_loss": [h["loss"] for h in sorted(history, key=lambda h: h["epoch"])
                            if h["split"] == "train" and h["task"] == target]}
    for split in ("dev", "holdout", "test"):
        rows = {h["epoch"]: h["metric"] for h in history if h["split"] == split and h["task"] == target}
        if split != "dev" and not rows:
            raise ValueError(f"the history has no {split} rows; the run was not made with train.trace")
        curve[split] = [rows[e] for e in sorted(rows)]
    curve["weights"] = {}
    for w in weights:
        curve["weights"].setdefault(w["task"], {})[w["epoch"]] = w["weight"]
    return curve


def stop_epoch(dev: list[float], patience: int | None, most: int) -> int:
    """The epoch a run of at most `most` epochs ends at, with train.patience's early stopping."""
    best, stale = -math.inf, 0
    for e, m in enumerate(dev[:most], start=1):
        if m > best:
            best, stale = m, 0
        else:
            stale += 1
        if patience is not None and stale >= patience:
            return e
    return min(most, len(dev))


def read_at(curve: dict, last: int, aux: str | None) -> dict:
    """A run stopped after `last` epochs: its best fit-half epoch's holdout and test, its weight."""
    dev = curve["dev"][:last]
    best = int(np.argmax(dev))  # first maximum, as fit() keeps it (a strictly better metric replaces)
    out = {"holdout": curve["holdout"][best], "test": curve["test"][best], "epochs": last, "best_epoch": best + 1}
    if aux is not None:
        out["weight"] = curve["weights"][aux][last]
    return out


def apply_rule(runs: dict, rule: dict, epochs: int) -> dict:
    """One seed's runs ({"single": curve, aux: curve}) read as if trained under `rule`."""
    out = {}
    if rule["kind"] == "baseline":
        base_stop = stop_epoch(runs["single"]["dev"], rule["patience"], epochs)
        screen_len = min(epochs, max(1, int(math.ceil(rule["factor"] * base_stop))))
    if rule["kind"] == "converged":
        below = [e for e, v in enumerate(runs["single"]["train_loss"][:epochs], start=1) if v < rule["loss"]]
        screen_len = min(epochs, int(math.ceil(rule["factor"] * below[0]))) if below else epochs
    for name, curve in runs.items():
        if rule["kind"] == "fixed":
            last = rule["epochs"]
        elif rule["kind"] == "patience":
            last = stop_epoch(curve["dev"], rule["patience"], epochs)
        elif rule["kind"] == "converged":
            last = screen_len
        else:
            last = base_stop if name == "single" else screen_len
        out[name] = read_at(curve, last, None if name == "single" else name)
    return out


def load_curves(project: Path) -> dict:
    params, _, head = project_head(project)
    target = head["target"]
    curves = {}
    for s in params["seeds"]:
        seed = {"single": read_run(project / f"results/baseline/{target}/seed-{s}", target)}
        for aux in [NULL, *params["candidates"]]:
            seed[aux] = read_run(project / f"results/screen/{aux}/seed-{s}", target)
        curves[s] = seed
    return head | {"epochs": params["train"]["epochs"], "curves": curves}


def screens_for(data: dict, rule: dict) -> dict:
    """bench/selection_power's `screens` for this rule (the dev examples' share left at 0)."""
    seeds = data["seeds"]
    runs = {str(s): apply_rule(data["curves"][s], rule, data["epochs"]) for s in seeds}
    zero = [[0.0] * len(seeds) for _ in seeds]
    return {k: data[k] for k in ("target", "metric", "seeds", "candidates", "select", "holdout_n")} | {
        "runs": runs, "dev_cov": {"seeds": sorted(seeds), "single": {a: zero for a in data["candidates"]},
                                  "null": {a: zero for a in data["candidates"]}}}


def prefix_check(screens: dict, tenfold: Path | None, key: str) -> str:
    """How many runs' L = 10 holdout reads equal a 10-epoch project's (same seeds and params): its
    folder, or a bench/selection_power results file that holds the pair."""
    if tenfold is None:
        return ""
    same = total = 0
    if tenfold.suffix == ".json":
        runs = json.loads(tenfold.read_text())["pairs"][key]["screens"]["runs"]
        for s, row in screens["runs"].items():
            for name, got in runs.get(s, {}).items():
                total += 1
                same += got["holdout"] == row[name]["holdout"]
        return f"{same}/{total}"
    for s, row in screens["runs"].items():
        folder = {"single": tenfold / f"results/baseline/{screens['target']}/seed-{s}"}
        folder.update({a: tenfold / f"results/screen/{a}/seed-{s}" for a in row if a != "single"})
        for name, f in folder.items():
            if (f / "summary.json").exists():
                got = json.loads((f / "summary.json").read_text())["metrics"]["holdout"][screens["metric"]]
                total += 1
                same += got == row[name]["holdout"]
    return f"{same}/{total}"


def analyse(data: dict, rules: list[dict], draws: int, positive: str, tenfold: Path | None, key: str) -> list[dict]:
    out = []
    for rule in rules:
        screens = screens_for(data, rule)
        ref = reference(screens)
        useless = [a for a, r in ref["candidates"].items() if r["test_over_null"] <= 0 and a != positive]
        res = resample(screens, SIZES, [{}], draws, useless)
        runs = list(screens["runs"].values())
        default = Rule(**screens["select"])
        out.append({"rule": rule, "label": rule_label(rule), "useless": useless, "reference": ref,
                    "p_kept": {r["k"]: r["p_kept"] for r in res}, "p_any_useless": {r["k"]: r["p_any_useless"] for r in res},
                    "mean_epochs": float(np.mean([v["epochs"] for r in runs for v in r.values()])),
                    "first_five": sorted(decide(screens, screens["seeds"][:5], default)),
                    "check": prefix_check(screens, tenfold, key) if rule == {"kind": "fixed", "epochs": 10} else ""})
    return out


def curve_by_length(data: dict, draws: int, positive: str, shuffled: str) -> list[dict]:
    """For every fixed length 1..epochs: every candidate's gain over the null (holdout mean, se; test
    mean) and P(positive / shuffled kept at 5 seeds) - the plot."""
    out = []
    for n in range(1, data["epochs"] + 1):
        screens = screens_for(data, {"kind": "fixed", "epochs": n})
        ref = reference(screens)["candidates"]
        kept = resample(screens, [5], [{}], draws, [])[0]["p_kept"] if len(data["seeds"]) >= 5 else {}
        out.append({"epochs": n, "gain": {a: [r["holdout_over_null"], r["holdout_over_null_se"], r["test_over_null"]]
                                                 for a, r in ref.items()},
                    "p_kept_5": kept.get(positive), "p_kept_5_shuffled": kept.get(shuffled)})
    return out


def plot(saved: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted(k for k, r in saved["pairs"].items() if r.get("by_length"))
    if not keys:
        return
    fig, axes = plt.subplots(2, len(keys), figsize=(4.2 * len(keys), 6.4), squeeze=False, sharex="col")
    for j, key in enumerate(keys):
        res, spec = saved["pairs"][key], PAIRS[key.split("-")[0]]
        pos = spec["positive"]
        rows = res["by_length"]
        n = [r["epochs"] for r in rows]
        ax = axes[0][j]
        for a in rows[0]["gain"]:
            m = np.array([r["gain"][a][0] for r in rows])
            se = np.array([r["gain"][a][1] for r in rows])
            style = {"color": "C0", "lw": 2} if a == pos else {"color": "C3" if a == spec["shuffled"] else "0.6", "lw": 1}
            ax.plot(n, m, label=a, **style)
            if a == pos:
                ax.fill_between(n, m - se, m + se, color="C0", alpha=0.2)
                ax.plot(n, [r["gain"][a][2] for r in rows], color="C0", lw=1, ls="--", label=f"{a} (test)")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(f"({key}) {res['name']}", fontsize=9)
        ax.set_ylabel("holdout gain over the null")
        ax.legend(fontsize=7)
        ax = axes[1][j]
        ax.plot(n, [r["p_kept_5"] for r in rows], color="C0", lw=2, label=f"{pos} kept")
        ax.plot(n, [r["p_kept_5_shuffled"] for r in rows], color="C3", lw=1, label=f"{spec['shuffled']} kept")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("screen length (epochs)")
        ax.set_ylabel("P(kept), 5-seed draws")
        ax.legend(fontsize=7)
    fig.suptitle("Screen length, read from one traced run per seed (bench/screen_length.py)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(key: str, res: dict) -> str:
    spec = PAIRS[key.split("-")[0]]
    pos, shuf = spec["positive"], spec["shuffled"]
    lines = [f"### ({key}) {res['name']} — {len(res['seeds'])} seeds, runs of {res['epochs']} epochs", "",
             f"`{res['command']}` — {res['date']}", "",
             f"Gain over the null over all seeds (mean ± se) of the positive control ({pos}) and the shuffled labels "
             f"({shuf}) on the judging holdout and on test; 'other, best' is the largest test gain of the other candidates. "
             f"P(kept) over {res['draws']} random k-seed subsets under the default rule; 'useless' = any candidate kept whose "
             "test gain over the null under that rule is ≤ 0 (the family-wise error). Epochs: mean over every run (baselines, "
             "null, screens) — the screening's cost.", "",
             f"| rule | epochs | {pos} holdout | {pos} test | {shuf} test | other, best | corr | kept k=3 | kept k=5 | kept k=8 | useless k=5 | seeds 0–4 keep | check |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rules"]:
        c = r["reference"]["candidates"]
        others = [a for a in c if a not in (pos, shuf)]
        best_other = max(c[a]["test_over_null"] for a in others) if others else float("nan")
        p = {int(k): v for k, v in r["p_kept"].items()}  # JSON keys are strings once saved
        useless = {int(k): v for k, v in r["p_any_useless"].items()}
        lines.append(f"| {r['label']} | {r['mean_epochs']:.1f} | {c[pos]['holdout_over_null']:+.4f} ± {c[pos]['holdout_over_null_se']:.4f} "
                     f"| {c[pos]['test_over_null']:+.4f} ± {c[pos]['test_over_null_se']:.4f} | {c[shuf]['test_over_null']:+.4f} "
                     f"| {best_other:+.4f} | {r['reference']['holdout_test_corr']:+.2f} | "
                     + " | ".join(f"{p[k][pos]:.2f}" if k in p else "–" for k in SIZES)
                     + f" | {useless.get(5, float('nan')):.2f} | {', '.join(r['first_five']) or 'nothing'} | {r['check']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_pair_args(ap)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(16)))
    ap.add_argument("--epochs", type=int, default=24, help="each run's length; every rule reads a prefix of it")
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tenfold", nargs="*", default=[], metavar="PAIR=PROJECT",
                    help="a finished 10-epoch project of the pair, or a selection_power results .json holding it (same "
                         "seeds): the L = 10 reads are compared with its runs")
    ap.add_argument("--results", default="screen_length")
    args = ap.parse_args()
    args.avil = args.target_task = None
    args.train = {"epochs": args.epochs, "trace": True}
    reuse = reuse_map(args)
    tenfold = {k: Path(v) for k, v in (t.split("=", 1) for t in args.tenfold)}
    path = ROOT / f"bench/results/{args.results}.json"
    saved = saved_results(args.results)
    for pair, key, frozen, project in screened_pairs(args, reuse):
        data = load_curves(project)
        default_len = int(pair_params(pair, args.seeds, args.text_epochs, frozen)["train"]["epochs"])
        res = {"name": PAIRS[pair]["name"] + (" (frozen-encoder mode)" if frozen else ""),
               "date": f"{datetime.now():%Y-%m-%d %H:%M}", "project": str(project), "seeds": data["seeds"],
               "epochs": args.epochs, "draws": args.draws,
               "command": f"python bench/screen_length.py --pairs {pair}" + (" --frozen-encoder" if frozen else "")
                          + f" --seeds {' '.join(map(str, args.seeds))} --epochs {args.epochs} --draws {args.draws}"
                          + (f" --reuse {pair}=<finished project>" if pair in reuse else "")
                          + (f" --tenfold {pair}={tenfold[pair]}" if pair in tenfold and tenfold[pair].suffix == ".json" else
                             f" --tenfold {pair}=<10-epoch project>" if pair in tenfold else ""),
               "rules": analyse(data, default_rules(args.epochs, default_len), args.draws, PAIRS[pair]["positive"],
                                tenfold.get(pair), key),
               "by_length": curve_by_length(data, min(args.draws, 300), PAIRS[pair]["positive"], PAIRS[pair]["shuffled"])}
        saved["pairs"][key] = res
        print(table(key, res), flush=True)
    import torch

    saved["machine"] = f"{cpu_model()}, {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    path.write_text(json.dumps(saved, indent=1))
    head = (f"Generated by bench/screen_length.py; {saved['machine']}. Each pair: one traced run of every baseline, "
            f"null and screen per seed; every rule is read from those runs. Plot: bench/results/{args.results}.png.\n\n")
    (ROOT / f"bench/results/{args.results}.md").write_text(head + "\n".join(table(k, r) for k, r in sorted(saved["pairs"].items())))
    plot(saved, ROOT / f"bench/results/{args.results}.png")


if __name__ == "__main__":
    main()
