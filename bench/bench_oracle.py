"""Selection vs the exhaustive oracle: train the target with every subset of a 4-candidate pool,
find the best subset by test metric, and compare with the pipeline's selection (dev only).

Run from a project whose data is prepared and whose baseline + screening runs exist for the seeds
(e.g. a finished default run); the pipeline's selection is recomputed from those screening runs,
restricted to --pool, with the project's `select` rule (`auxsel.select.summarise`):

    cd /path/to/finished/project && python /path/to/repo/bench/bench_oracle.py --seeds 0 1 2 --methods uniform avil

One run per (method, subset, seed), one torch thread, seeded like the pipeline (init seed =
derive_seed(seed, "init", target, s), so every run of one seed starts from the same weights; run
seed = derive_seed(seed, "oracle", target, method, subset, s)). Progress is kept in
bench/results/oracle_runs.json, so an interrupted run resumes. Writes bench/results/oracle.{json,md}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics as st
import sys
import time
from pathlib import Path

import torch

PROJECT = Path.cwd()
sys.path.insert(0, str(PROJECT))
from stages import _common  # noqa: E402

from auxsel.methods import run_method  # noqa: E402
from auxsel.models import build_model  # noqa: E402
from auxsel.select import Rule, summarise  # noqa: E402
from auxsel.seeding import derive_seed  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"


def name(subset: tuple[str, ...]) -> str:
    return "+".join(subset) if subset else "(none)"


def pipeline_selection(params: dict, pool: list[str], seeds: list[int]) -> tuple[list[dict], float, dict]:
    """The select stage's decision on `pool` from the project's baseline/screen runs, and their training seconds."""
    target = params["target"]
    metric = json.loads((_common.PREPARED / target / "meta.json").read_text())["metric"]
    res = _common.RESULTS
    secs = {"baseline": 0.0, "screen": 0.0}
    base = {}
    for s in seeds:
        d = res / "baseline" / target / f"seed-{s}"
        base[s] = json.loads((d / "summary.json").read_text())["metrics"]["dev"][metric]
        secs["baseline"] += json.loads((d / "provenance.json").read_text())["wall_seconds"]
    dev, weight = {}, {}
    for a in pool:
        dev[a], weight[a] = {}, {}
        for s in seeds:
            d = res / "screen" / a / f"seed-{s}"
            summ = json.loads((d / "summary.json").read_text())
            dev[a][s] = summ["metrics"]["dev"][metric]
            weight[a][s] = summ["final_weights"][a]
            secs["screen"] += json.loads((d / "provenance.json").read_text())["wall_seconds"]
    rows = summarise(base, dev, weight, Rule(**params["select"]))
    return rows, secs["baseline"] + secs["screen"], secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--pool", nargs="+", default=["left_more", "right", "mnist", "shuffled"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=["uniform", "avil"])
    ap.add_argument("--report-only", action="store_true", help="only tabulate the runs already done")
    args = ap.parse_args()
    torch.set_num_threads(1)
    params = _common.load_params(args.params)
    target = params["target"]
    tasks = _common.load_tasks(params, [target, *args.pool])
    metric = tasks[target].metric
    train = _common.train_section(params)
    subsets = [tuple(c) for k in range(len(args.pool) + 1) for c in itertools.combinations(args.pool, k)]
    OUT.mkdir(exist_ok=True)
    store = OUT / "oracle_runs.json"
    runs = json.loads(store.read_text()) if store.exists() else {}
    for method in [] if args.report_only else args.methods:
        for subset in subsets:
            for s in args.seeds:
                m = "single" if not subset else method
                key = f"{m}|{name(subset)}|{s}"
                if key in runs:
                    continue
                names = [target, *subset]
                t0 = time.perf_counter()
                model = build_model(_common.model_spec(params), {n: tasks[n].num_classes for n in names},
                                    seed=derive_seed(params["seed"], "init", target, s))
                r = run_method(m, model, {n: tasks[n] for n in names}, target,
                               seed=derive_seed(params["seed"], "oracle", target, m, ",".join(subset), s), train=train,
                               options=params.get(m) or None)
                secs = time.perf_counter() - t0
                runs[key] = {"test": r.metrics["test"][metric], "dev": r.metrics["dev"][metric], "seconds": secs,
                             "weights": r.final_weights}
                store.write_text(json.dumps(runs, indent=1))
                print(f"{key:<50} test {runs[key]['test']:.4f} dev {runs[key]['dev']:.4f} ({secs:.1f} s)", flush=True)

    rows, pipe_secs, pipe_parts = pipeline_selection(params, args.pool, args.seeds)
    selected = tuple(a for a in args.pool if a in {r["aux"] for r in rows if r["selected"]})
    report = {"pool": args.pool, "seeds": args.seeds, "selected": list(selected), "selection": rows, "methods": {}}
    lines = []
    for method in args.methods:
        table = {}
        for subset in subsets:
            m = "single" if not subset else method
            vals = [runs.get(f"{m}|{name(subset)}|{s}") for s in args.seeds]
            if all(vals):
                table[subset] = vals
        if len(table) < len(subsets):
            lines.append(f"\n**{method}**: {len(table)} of {len(subsets)} subsets done (all seeds); no oracle yet.\n")
            report["methods"][method] = {"done": len(table)}
            continue
        mean = {k: st.mean(v["test"] for v in vals) for k, vals in table.items()}
        std = {k: st.stdev(v["test"] for v in vals) for k, vals in table.items()}
        exh_secs = sum(v["seconds"] for vals in table.values() for v in vals)
        best = max(mean, key=mean.get)
        regret = mean[best] - mean[selected]
        noise = st.median(std.values())
        # the pipeline's own compute: baseline + screening (from provenance), plus training the selected subset
        final_secs = sum(v["seconds"] for v in table[selected])
        frac = (pipe_secs + final_secs) / exh_secs
        ranked = sorted(mean, key=mean.get, reverse=True)
        rank_sel = ranked.index(selected) + 1
        paired = [b["test"] - c["test"] for b, c in zip(table[best], table[selected])]  # same seed, same initial weights
        # the pipeline's compute under the same conditions as the exhaustive runs (one job at a time):
        # single-task (= the baseline) + αVIL on every {target, a} (= screening) + the selected subset
        same = None
        if all(runs.get(f"avil|{a}|{s}") for a in args.pool for s in args.seeds):
            same = (sum(v["seconds"] for v in table[()]) + sum(runs[f"avil|{a}|{s}"]["seconds"] for a in args.pool for s in args.seeds)
                    + final_secs)
        lines.append(f"\n**{method}** — all 16 subsets × {len(args.seeds)} seeds, target test {metric} (ranked; `*` = pipeline's selection):\n")
        lines.append(f"| rank | auxiliary subset | test {metric} mean ± std | dev {metric} mean | training s (all seeds) |\n|---|---|---|---|---|")
        for i, k in enumerate(ranked, 1):
            star = " *" if k == selected else ""
            lines.append(f"| {i} | {name(k)}{star} | {mean[k]:.3f} ± {std[k]:.3f} | {st.mean(v['dev'] for v in table[k]):.3f} | "
                         f"{sum(v['seconds'] for v in table[k]):.0f} |")
        lines.append(
            f"\nOracle best: **{name(best)}** {mean[best]:.3f}; pipeline's selection **{name(selected)}** {mean[selected]:.3f} "
            f"(rank {rank_sel} of {len(subsets)}). Regret **{regret:+.3f}** vs seed noise (median std over subsets) {noise:.3f}, "
            f"std of the best subset {std[best]:.3f} → {'within' if regret <= noise else 'NOT within'} one std; paired per seed "
            f"(best − selected) {st.mean(paired):+.3f} ± {st.stdev(paired):.3f} ({sum(d > 0 for d in paired)} of {len(paired)} seeds favour the best). "
            f"Compute: pipeline {pipe_secs:.0f} s (baseline {pipe_parts['baseline']:.0f} s + screening {pipe_parts['screen']:.0f} s, "
            f"provenance wall_seconds) + {final_secs:.0f} s to train the selected subset = {pipe_secs + final_secs:.0f} s, vs exhaustive "
            f"{exh_secs:.0f} s: **{frac:.2f}** of the exhaustive search ({'≤' if frac <= 0.25 else '>'} 1/4)."
            + ("" if same is None else f" Same conditions as the exhaustive runs (single + αVIL pairs timed here + the selected subset): "
               f"{same:.0f} s = **{same / exh_secs:.2f}**."))
        report["methods"][method] = {"mean": {name(k): v for k, v in mean.items()}, "std": {name(k): v for k, v in std.items()},
                                     "best": name(best), "regret": regret, "noise_median_std": noise, "best_std": std[best],
                                     "rank_selected": rank_sel, "paired_regret": paired,
                                     "pipeline_seconds_same_conditions": same, "pipeline_seconds": pipe_secs, "pipeline_parts": pipe_parts,
                                     "selected_train_seconds": final_secs, "exhaustive_seconds": exh_secs, "compute_fraction": frac}
    sel_txt = "; ".join(f"{r['aux']} w {r['weight_mean']:.2f}, dev gain {r['gain_mean']:+.3f} "
                        f"[{r['gain_ci_low']:+.3f}, {r['gain_ci_high']:+.3f}] {'KEEP' if r['selected'] else 'drop'}" for r in rows)
    head = (f"Pipeline selection on pool {{{', '.join(args.pool)}}}, seeds {args.seeds}, rule {params['select']} "
            f"(dev only): **{name(selected)}** — {sel_txt}")
    text = head + "\n" + "\n".join(lines)
    print(text)
    (OUT / "oracle.json").write_text(json.dumps(report, indent=2, default=str))
    cmd = (f"cd <finished default run> && python <repo>/bench/bench_oracle.py --seeds {' '.join(map(str, args.seeds))} "
           f"--methods {' '.join(args.methods)} --pool {' '.join(args.pool)}")
    (OUT / "oracle.md").write_text(f"`{cmd}` (one torch thread, 2-core CPU)\n\n{text}\n")


if __name__ == "__main__":
    main()
