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
import multiprocessing
import json
import statistics as st
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch

PROJECT = Path.cwd()
sys.path.insert(0, str(PROJECT))
from stages import _common  # noqa: E402

from auxsel.methods import run_method  # noqa: E402
from auxsel.models import build_model  # noqa: E402
from auxsel.params import NULL  # noqa: E402
from auxsel.seeding import derive_seed  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"


def name(subset: tuple[str, ...]) -> str:
    return "+".join(subset) if subset else "(none)"


def pipeline_selection(params: dict, pool: list[str], seeds: list[int]) -> tuple[list[dict], dict, float, dict]:
    """The select stage's decision (stages.select.decide: dev holdout, null candidate, Holm) on
    `pool` from the project's baseline/screen runs of `seeds`, and their training seconds (the
    null candidate's screens included: the pipeline runs them)."""
    from stages.select import decide

    rows, decision, _ = decide(dict(params, seeds=seeds), pool)
    target = params["target"]
    res = _common.RESULTS
    secs = {"baseline": 0.0, "screen": 0.0, "baseline_epochs": 0.0, "screen_epochs": 0.0}
    for s in seeds:
        runs = [("baseline", res / "baseline" / target / f"seed-{s}")] + [("screen", res / "screen" / a / f"seed-{s}")
                                                                          for a in [*pool, NULL]]
        for stage, folder in runs:
            secs[stage] += json.loads((folder / "provenance.json").read_text())["wall_seconds"]
            secs[f"{stage}_epochs"] += epoch_seconds(pq.read_table(folder / "history.parquet").to_pylist())
    return rows, decision, secs["baseline_epochs"] + secs["screen_epochs"], secs


def epoch_seconds(history: list[dict]) -> float:
    """A run's training compute: the sum of its epochs' wall times (training and the epoch's
    evaluation; every history row of an epoch repeats it). Job overheads — process start, loading
    the data and the encoder, hashing inputs, writing artifacts — are left out on both sides of the
    comparison: the exhaustive search run as pipeline jobs would pay them too."""
    return sum({int(r["epoch"]): float(r["seconds"]) for r in history}.values())


def train_one(job: tuple) -> tuple[str, dict]:
    """One (method, subset, seed) run, one torch thread (a worker process of --jobs)."""
    key, m, subset, s, weights = job
    torch.set_num_threads(1)
    params, tasks, train = _STATE["params"], _STATE["tasks"], _STATE["train"]
    target = params["target"]
    names = [target, *subset]
    t0 = time.perf_counter()
    model = build_model(_common.model_spec(params), {n: tasks[n].num_classes for n in names},
                        seed=derive_seed(params["seed"], "init", target, s))
    r = run_method(m, model, {n: tasks[n] for n in names}, target,
                   seed=derive_seed(params["seed"], "oracle", target, m, ",".join(subset), s), train=train,
                   options=params.get(m) or None, weights=weights)
    metric = tasks[target].metric
    return key, {"test": r.metrics["test"][metric], "dev": r.metrics["dev"][metric], "seconds": time.perf_counter() - t0,
                 "epoch_seconds": epoch_seconds(r.history), "weights": r.final_weights, "best_epoch": r.best_epoch,
                 "epochs": len({int(h["epoch"]) for h in r.history})}


def free_fit_floor(runs: dict, pool: list[str], seeds: list[int], screen_epochs: int, final_epochs: int) -> float | None:
    """The least the pipeline's screening could cost with a free fit: each pairwise screen at the
    cost of the uniform run of its pair, the null's at the mean candidate's, the baseline at the
    single-task run's, all scaled from the finals' length to the screens'. Its own final is added
    by the caller. None when the uniform pair runs are not all there.

    Why: with a null candidate, 2·(K+1)+1 task-epochs per seed are screened against Σ_S (1+|S|)
    for the exhaustive search (48 for K=4), so at equal lengths the bound is ~0.23 of it before
    any αVIL overhead; the table says how far a pool's own sizes and lengths move it."""
    total = 0.0
    for s in seeds:
        pairs = [runs.get(f"uniform|{c}|{s}") for c in pool]
        single = runs.get(f"single|(none)|{s}")
        if not all(pairs) or single is None:
            return None
        costs = [v["epoch_seconds"] for v in pairs]
        total += sum(costs) + st.mean(costs) + single["epoch_seconds"]
    return total * screen_epochs / final_epochs


def median_best(vals: list[dict]) -> str:
    """The median best epoch of a subset's runs; — for runs stored before it was recorded."""
    best = [v["best_epoch"] for v in vals if "best_epoch" in v]
    return f"{st.median(best):g}" if best else "—"


_STATE: dict = {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--pool", nargs="+", default=["left_more", "right", "mnist", "shuffled"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=["uniform", "avil"])
    ap.add_argument("--report-only", action="store_true", help="only tabulate the runs already done")
    ap.add_argument("--jobs", type=int, default=1, help="runs at once (one torch thread each)")
    ap.add_argument("--results", default="oracle",
                    help="bench/results/<name>.{md,json} and <name>_runs.json (default: oracle, the default pool's)")
    ap.add_argument("--project", default="<finished default run>", help="how the command line names the project (docs only)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    params = _common.load_params(args.params)
    target = params["target"]
    tasks = _common.load_tasks(params, [target, *args.pool])
    metric = tasks[target].metric
    # every subset is a final run: the finals' training length (final.train over train)
    train = _common.train_section(_common.stage_train(params, "final"))
    screen_epochs = int(params["train"]["epochs"])
    _STATE.update(params=params, tasks=tasks, train=train)
    subsets = [tuple(c) for k in range(len(args.pool) + 1) for c in itertools.combinations(args.pool, k)]
    OUT.mkdir(exist_ok=True)
    store = OUT / f"{args.results}_runs.json"
    kept = json.loads(store.read_text()) if store.exists() else {}
    # runs of another training length (or the old flat format) are not reused
    runs = kept.get("runs", {}) if kept.get("train") == train else {}
    runs = {k: v for k, v in runs.items() if "epoch_seconds" in v}  # runs from before the compute was counted by epochs
    rows, decision, pipe_secs, pipe_parts = pipeline_selection(params, args.pool, args.seeds)
    selected = tuple(a for a in args.pool if a in decision["selected"])
    jobs = []
    for method in [] if args.report_only else args.methods:
        for subset in subsets:
            for s in args.seeds:
                m = "single" if not subset else method
                jobs.append((f"{m}|{name(subset)}|{s}", m, subset, s, None))
    if not args.report_only:  # the pipeline's own final: the selected subset at its selected weights
        for s in args.seeds:
            m = "fixed" if selected else "single"
            jobs.append((f"{m}|{name(selected)}|{s}", m, selected, s, {target: 1.0, **decision["weights"]} if selected else None))
    todo = list({j[0]: j for j in jobs if j[0] not in runs}.values())
    with multiprocessing.get_context("fork").Pool(max(1, args.jobs)) as pool:
        for key, out in pool.imap_unordered(train_one, todo):
            runs[key] = out
            store.write_text(json.dumps({"train": train, "runs": runs}, indent=1))
            print(f"{key:<50} test {out['test']:.4f} dev {out['dev']:.4f} ({out['seconds']:.1f} s)", flush=True)

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
        exh_secs = sum(v["epoch_seconds"] for vals in table.values() for v in vals)
        exh_wall = sum(v["seconds"] for vals in table.values() for v in vals)
        best = max(mean, key=mean.get)
        noise = st.median(std.values())
        # the pipeline's answer: its final run, the selected subset at the selected weights (`fixed`)
        own_m = "fixed" if selected else "single"
        own = [runs.get(f"{own_m}|{name(selected)}|{s}") for s in args.seeds]
        if not all(own):
            lines.append(f"\n**{method}**: the pipeline's final ({own_m} on {name(selected)}) not run for every seed yet.\n")
            continue
        own_mean, own_std = st.mean(v["test"] for v in own), st.stdev(v["test"] for v in own)
        regret = mean[best] - own_mean
        # the pipeline's own compute: baseline + screening epochs, the null's included, plus its final's
        final_secs = sum(v["epoch_seconds"] for v in own)
        frac = (pipe_secs + final_secs) / exh_secs
        jobs_frac = (pipe_parts["baseline"] + pipe_parts["screen"] + sum(v["seconds"] for v in own)) / exh_wall
        floor = free_fit_floor(runs, args.pool, args.seeds, screen_epochs, train["epochs"])
        floor_frac = None if floor is None else (floor + final_secs) / exh_secs
        best_epochs = [v["best_epoch"] for vals in table.values() for v in vals if "best_epoch" in v]
        ranked = sorted(mean, key=mean.get, reverse=True)
        rank_sel = ranked.index(selected) + 1
        paired = [b["test"] - c["test"] for b, c in zip(table[best], own)]  # same seed, same initial weights
        lines.append(f"\n**{method}** — all {len(subsets)} subsets × {len(args.seeds)} seeds, target test {metric} (ranked; `*` = pipeline's selection):\n")
        lines.append(f"| rank | auxiliary subset | test {metric} mean ± std | dev {metric} mean | training epochs s (all seeds) "
                     f"| best epoch, median (of {train['epochs']}) |\n|---|---|---|---|---|---|")
        for i, k in enumerate(ranked, 1):
            star = " *" if k == selected else ""
            lines.append(f"| {i} | {name(k)}{star} | {mean[k]:.3f} ± {std[k]:.3f} | {st.mean(v['dev'] for v in table[k]):.3f} | "
                         f"{sum(v['epoch_seconds'] for v in table[k]):.0f} | {median_best(table[k])} |")
        lines.append(f"| — | pipeline's final: `{own_m}` on {name(selected)} at the selected weights | {own_mean:.3f} ± {own_std:.3f} | "
                     f"{st.mean(v['dev'] for v in own):.3f} | {final_secs:.0f} | {median_best(own)} |")
        lines.append(
            f"\nOracle best: **{name(best)}** {mean[best]:.3f}; pipeline's final (`{own_m}`, {name(selected)}) {own_mean:.3f} "
            f"(the same subset under {method}: rank {rank_sel} of {len(subsets)}). Regret **{regret:+.3f}** vs seed noise (median std over subsets) {noise:.3f}, "
            f"std of the best subset {std[best]:.3f} → {'within' if regret <= noise else 'NOT within'} one std; paired per seed "
            f"(best − selected) {st.mean(paired):+.3f} ± {st.stdev(paired):.3f} ({sum(d > 0 for d in paired)} of {len(paired)} seeds favour the best). "
            f"Compute, training epochs on both sides (each run's epoch wall times, evaluation included): pipeline "
            f"{pipe_secs:.0f} s (baseline {pipe_parts['baseline_epochs']:.0f} s + screening {pipe_parts['screen_epochs']:.0f} s, "
            f"the null candidate's included) + {final_secs:.0f} s for its final = {pipe_secs + final_secs:.0f} s, vs exhaustive "
            f"{exh_secs:.0f} s: **{frac:.2f}** of the exhaustive search ({'≤' if frac <= 0.25 else '>'} 1/4). "
            f"Counting the pipeline's whole jobs instead (provenance wall_seconds: {pipe_parts['baseline'] + pipe_parts['screen']:.0f} s, "
            f"data and encoder loading included) against the exhaustive runs' in-process seconds ({exh_wall:.0f} s, which "
            f"leave those out): {jobs_frac:.2f}. "
            + (f"With a free fit (every screen at its pair's uniform cost, the null's at the mean candidate's, at the screens' "
               f"{screen_epochs} epochs against the finals' {train['epochs']}), the pipeline would still cost {floor_frac:.2f} of the "
               f"exhaustive search: the rest is αVIL's fit. " if floor_frac is not None else "")
            + (f"The finals' best epoch (kept by the dev metric): median {st.median(best_epochs):g} of {train['epochs']} over "
               f"{len(best_epochs)} runs, {sum(b == train['epochs'] for b in best_epochs)} at the last epoch."
               if best_epochs else ""))
        report["methods"][method] = {"mean": {name(k): v for k, v in mean.items()}, "std": {name(k): v for k, v in std.items()},
                                     "best": name(best), "regret": regret, "noise_median_std": noise, "best_std": std[best],
                                     "rank_selected": rank_sel, "paired_regret": paired,
                                     "pipeline_final": {"method": own_m, "mean": own_mean, "std": own_std},
                                     "pipeline_seconds": pipe_secs, "pipeline_parts": pipe_parts,
                                     "selected_train_seconds": final_secs, "exhaustive_seconds": exh_secs, "compute_fraction": frac,
                                     "exhaustive_run_seconds": exh_wall, "compute_fraction_jobs": jobs_frac,
                                     "compute_fraction_free_fit": floor_frac, "best_epochs": best_epochs}
    sel_txt = "; ".join(f"{r['aux']} w {r['weight_mean']:.2f}, gain over single {r['gain_mean']:+.3f}, over the null "
                        f"{r['null_gain_mean']:+.3f} (Holm p {r['null_p_holm']:.3f}) {'KEEP' if r['selected'] else 'drop'}" for r in rows)
    head = (f"Pipeline selection (stages.select.decide) on pool {{{', '.join(args.pool)}}}, seeds {args.seeds}, rule "
            f"{params['select']} ({decision['split']} only): **{name(selected)}** — {sel_txt}. Every run below is a final: "
            f"train = {json.dumps({k: v for k, v in train.items() if k in ('epochs', 'patience', 'examples_per_task')})}.")
    text = head + "\n" + "\n".join(lines)
    print(text)
    (OUT / f"{args.results}.json").write_text(json.dumps(report, indent=2, default=str))
    cmd = (f"cd {args.project} && python <repo>/bench/bench_oracle.py --seeds {' '.join(map(str, args.seeds))} "
           f"--methods {' '.join(args.methods)} --pool {' '.join(args.pool)} --jobs {args.jobs}"
           + (f" --results {args.results}" if args.results != "oracle" else ""))
    (OUT / f"{args.results}.md").write_text(f"`{cmd}` (one torch thread, 2-core CPU)\n\n{text}\n")


if __name__ == "__main__":
    main()
