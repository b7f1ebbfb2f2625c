"""Do the screening methods rank a pool's candidates right? Four pool/target pairs, 5 seeds, one command.

    python bench/bench_ranking.py                       # all four pairs (text pairs take hours on 2 cores)
    python bench/bench_ranking.py --pairs a b --jobs 2  # the two vision pairs

Pairs: (a) the default vision pool (params.yaml, target `left`); (b) the vision pool with the right
digit as target (configs/vision_right.yaml); (c) the text pool, scaled as bench/text_bench_params.py
but at 6 epochs (configs/text.yaml, target `sentiment`); (d) the text pool with target
`subjectivity` (configs/text_subjectivity.yaml). Every pool has a positive control (more data of
the target's own task) and a shuffled-labels control.

For each pair and seed, every candidate is screened pairwise with {target, candidate} by: `uniform`,
`diw`, `avil` (the current default: the share read-out) and `avil_prev` (`avil` as it was before
issue 13: the α read-out, `auxsel.methods.avil.PREVIOUS`), with the pipeline's seeds (same initial
model, same batch order and same dev examples for every method and candidate of one seed), plus
the single-task baseline. The reference effect of a candidate is uniform's paired test gain over
single (mean over seeds). Importance: `avil` - the mean share (0: an update that does not help the
target's dev loss gets 0 in expectation); `avil_prev` and `diw` - the final weight. Checks per pair
and method (issue 13):
  - the positive control has the top importance on >= 4 of 5 seeds;
  - shuffled below the positive control on 5 of 5, and below the target's own level (final weight
    < 1; for `avil` a share below the target's) on >= 4 of 5 (the table also shows, for `avil`,
    the stricter count of shuffled shares below 0);
  - Spearman(mean importance, reference effects) >= 0.8;
  - screening dev metric (mean over candidates and seeds) not below avil_prev's by > 0.005.

Each pair runs in its own project (--workdir/<pair>, kept and reused): data are prepared there by
snakemake, then one worker per seed (--jobs at a time, one torch thread each) writes
<project>/ranking/seed-N.json. Results: bench/results/ranking.{json,md} (pairs run later are
merged in).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import random
import shutil
import statistics as st
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

METHODS = ["uniform", "diw", "avil", "avil_prev"]
VARIANTS = {"avil_prev": ("avil", "PREVIOUS"), "avil_against": ("avil", {"merge_against": True}),  # ablations of avil
            "avil_unguarded": ("avil", {"merge_guard": False}),
            "avil_tfixed": ("avil", {"temperature_fixed": True}),  # the temperature solved at the target's own step, held
            "avil_untempered": ("avil", {"temperature": False}),
            "avil_ftol4": ("avil", {"fit_ftol": 1e-4}),  # a fit stopped when an iteration gains < 1e-4 nats
            "avil_ftol3": ("avil", {"fit_ftol": 1e-3}),  # ... < 1e-3 nats: the stop that meets the 1.5x cost on CPU
            "avil_rtol1": ("avil", {"fit_rtol": 0.01}),  # ... gains < 1% of the fit's gain so far (no scale)
            "avil_rtol3": ("avil", {"fit_rtol": 0.03}),
            "avil_rtol10": ("avil", {"fit_rtol": 0.1}),
            "avil_ownstep": ("avil", {"merge_step": "own"}),  # merged at the target's own step length
            "avil_balanced": ("avil", {"fit_loss": "balanced"}),  # class-balanced fitting loss
            "avil_half": ("avil", {"dev_batch": 128}),  # the fit on half as many dev examples (cost)
            "avil_halfrot": ("avil", {"dev_batch": 128, "dev_rotate": True}),  # ... the next 128 of dev each epoch
            "avil_back": ("avil", {"merge_backtrack": 8}),  # every fit's mix halved until the untempered model can use it
            "avil_halfrotback": ("avil", {"dev_batch": 128, "dev_rotate": True, "merge_backtrack": 8}),
            "avil_tfold": ("avil", {"merge_temperature": True}),  # the fit's temperature folded into the target's head
            "diw_tempered": ("diw", {"temperature": True})}  # DIW's look-ahead scored at its best temperature
ABLATIONS = [m for m in VARIANTS if m not in METHODS]
PAIRS = {
    "a": {"name": "vision, target left", "config": "params.yaml", "positive": "left_more", "shuffled": "shuffled"},
    "b": {"name": "vision, target right", "config": "configs/vision_right.yaml", "positive": "right_more",
          "shuffled": "shuffled"},
    "c": {"name": "text, target sentiment", "config": "configs/text.yaml", "positive": "sentiment_more",
          "shuffled": "shuffled", "text": True},
    "d": {"name": "text, target subjectivity", "config": "configs/text_subjectivity.yaml",
          "positive": "subjectivity_more", "shuffled": "shuffled", "text": True},
    # held out: added after the defaults were chosen, to check them on a pool they were not tuned on
    "e": {"name": "vision, target centred digit (held out)", "config": "configs/vision_digit.yaml",
          "positive": "digit_more", "shuffled": "shuffled"},
}


def pair_params(pair: str, seeds: list[int], text_epochs: int, frozen: bool = False) -> dict:
    spec = PAIRS[pair]
    base = yaml.safe_load((ROOT / spec["config"]).read_text())
    if not spec.get("text"):
        base["seeds"] = list(seeds)
        return base
    from text_bench_params import MINILM_DEPTH, scaled

    if frozen:  # text_bench_params.py --frozen-encoder: pooled embeddings cached, shared MLP, 10 epochs
        p = scaled(base, candidate_train=500, epochs=10, freeze_layers=MINILM_DEPTH, max_length=32, seeds=seeds,
                   mlp_layers=2, mlp_width=256, positive=(spec["positive"],))
        p["train"]["lr"] = 1e-3
        return p
    return scaled(base, candidate_train=500, epochs=text_epochs, freeze_layers=4, max_length=32, seeds=seeds,
                  positive=(spec["positive"],))


# -- the worker: one seed of one pair, inside its project


def worker(seed: int, methods: list[str]) -> None:
    import torch

    from stages import _common

    from auxsel.methods import run_method
    from auxsel.methods.avil import PREVIOUS
    from auxsel.models import build_model
    from auxsel.seeding import derive_seed

    torch.set_num_threads(1)
    params = _common.load_params(Path("params.yaml"))
    g, target = params["seed"], params["target"]
    tasks = _common.load_tasks(params, [target, *params["candidates"]])
    train = _common.train_section(params)
    metric = tasks[target].metric
    eval_seed = derive_seed(g, "dev", target, seed)
    data_seed = derive_seed(g, "data", target, seed)  # as stages._common.training_run: same target batches in every run

    def run(method: str, names: list[str], run_seed: int) -> dict:
        model = build_model(_common.model_spec(params), {n: tasks[n].num_classes for n in names},
                            seed=derive_seed(g, "init", target, seed))
        name, options = VARIANTS.get(method, (method, None))
        options = dict(PREVIOUS) if options == "PREVIOUS" else options
        t0 = time.perf_counter()
        r = run_method(name, model, {n: tasks[n] for n in names}, target, seed=run_seed, train=train,
                       options=options, eval_seed=eval_seed, data_seed=data_seed)
        rows = [{k: v for k, v in w.items() if isinstance(v, (int, float, str, bool))} for w in r.weights]
        return {"dev": r.metrics["dev"][metric], "test": r.metrics["test"][metric],
                "holdout": r.metrics.get("holdout", {}).get(metric), "weights": r.final_weights,
                "rows": rows, "seconds": time.perf_counter() - t0}

    path = Path(f"ranking/seed-{seed}.json")
    out: dict = json.loads(path.read_text()) if path.exists() else {}  # add methods to an earlier run's file
    out.update(seed=seed, metric=metric)
    if "single" not in out:
        out["single"] = run("single", [target], derive_seed(g, "baseline", target, "", seed))
    for aux in params["candidates"]:
        run_seed = derive_seed(g, "screen", target, aux, seed)
        out.setdefault(aux, {})
        for m in methods:
            if m not in out[aux]:
                out[aux][m] = run(m, [target, aux], run_seed)
        print(f"seed {seed} {aux}: " + ", ".join(f"{m} dev {v['dev']:.4f} w {v['weights'][aux]:.3f}" for m, v in out[aux].items()),
              flush=True)
    Path("ranking").mkdir(exist_ok=True)
    tmp = Path(f"ranking/seed-{seed}.json.tmp")
    tmp.write_text(json.dumps(out))
    tmp.replace(f"ranking/seed-{seed}.json")


# -- the driver


def prepare(pair: str, project: Path, params: dict, with_snakemake: bool = True) -> None:
    from bench_text_pipeline import make_project, snakemake

    text = yaml.safe_dump(params, sort_keys=False)
    if not project.exists():
        make_project(project, ROOT / "data" / "raw", text)
    else:  # a kept project: the checkout's code and workflow (they must match: the stages and the rules
        # share the runner lock's protocol), so that methods added to its seed files run today's code
        from bench_text_pipeline import PROJECT_FILES

        for name in PROJECT_FILES:
            src, dest = ROOT / name, project / name
            if dest.is_dir():
                shutil.rmtree(dest)
            if src.is_dir():
                shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            elif src.exists():
                shutil.copy2(src, dest)
        if (project / "params.yaml").read_text() != text:
            (project / "params.yaml").write_text(text)
    names = [params["target"], *params["candidates"]]
    if with_snakemake:
        wall, _ = snakemake(project, 2, *[f"data/features/{n}" for n in names])
    else:  # a machine without Snakemake (e.g. a GPU box): the stages by hand, skipping finished folders
        t0 = time.time()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(project / "src"), str(project),
                                                                          os.environ.get("PYTHONPATH")]))}
        for stage, folder in (("prepare", "prepared"), ("features", "features")):
            for n in names:
                if not (project / "data" / folder / n / "manifest.json").exists():
                    subprocess.run([sys.executable, "-m", f"stages.{stage}", "--task", n], cwd=project, env=env, check=True)
        wall = time.time() - t0
    print(f"[{pair}] data ready in {project} ({wall:.0f} s)", flush=True)


def run_seed(project: Path, seed: int, methods: list[str]) -> Path:
    out = project / "ranking" / f"seed-{seed}.json"
    if out.exists():
        done = json.loads(out.read_text())
        cands = yaml.safe_load((project / "params.yaml").read_text())["candidates"]
        if all(m in done.get(a, {}) for a in cands for m in methods):
            return out
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(project / "src"), str(project), os.environ.get("PYTHONPATH")])), "OMP_NUM_THREADS": "1"}
    log = project / "ranking" / f"seed-{seed}.log"
    log.parent.mkdir(exist_ok=True)
    with log.open("w") as fh:
        res = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(seed), "--methods", *methods],
                             cwd=project, stdout=fh, stderr=subprocess.STDOUT, env=env)
    if res.returncode:
        raise SystemExit(f"worker {project} seed {seed} failed; see {log}")
    return out


def machine(device: str) -> str:
    import torch

    from default_run import machine as kind  # the CPU model: results differ between CPU vendors

    where = torch.cuda.get_device_name(0) if device.startswith("cuda") else "CPU"
    return (f"{kind()['cpu']}, {platform.machine()}, {os.cpu_count()} cores, {where}, torch {torch.__version__}, "
            "one thread per worker")


def spearman(x: list[float], y: list[float]) -> float:
    from scipy import stats

    return float(stats.spearmanr(x, y).statistic)


def reliability(per_seed: dict[str, list[float]], max_splits: int = 2000) -> dict | None:
    """How far the candidates' mean ranking is from noise: the Spearman between the means over two
    halves of the seeds, averaged over every split (over `max_splits` splits drawn with a fixed seed
    when there are more: 20 seeds have 92,378), and Spearman-Brown's step-up to all n seeds.
    Two noisy measures of one ranking correlate at most ~√(rel_1·rel_2): a method that ranks
    perfectly expects Spearman ≈ √(reference reliability) against the reference."""
    n = len(next(iter(per_seed.values())))
    if n < 4:
        return None
    if math.comb(n, n // 2) <= max_splits:
        halves = list(itertools.combinations(range(n), n // 2))
    else:
        rng = random.Random(0)
        halves = [tuple(sorted(rng.sample(range(n), n // 2))) for _ in range(max_splits)]
    rs = []
    for half in halves:
        rest = [i for i in range(n) if i not in half]
        rs.append(spearman([st.mean(v[i] for i in half) for v in per_seed.values()],
                           [st.mean(v[i] for i in rest) for v in per_seed.values()]))
    r = st.mean(rs)
    full = 2 * r / (1 + r) if r > 0 else r
    return {"split_half": r, "all_seeds": full, "ceiling": max(full, 0.0) ** 0.5, "splits": len(halves)}


def dev_read(seeds_out: list[dict], cands: list[str], ref: dict[str, float]) -> dict:
    """What the target's dev data can tell: uniform's own paired gains over single-task measured on
    dev instead of test, and their Spearman against the (test) reference. "dev" is the half that the
    fits read and the best epoch is chosen on; "holdout" the half that only judges (seed files from
    before it was recorded have none). A read-out of the target's dev data is not expected to rank the
    candidates better than the dev measurement of the very effect the reference measures on test."""
    out = {}
    for split in ("dev", "holdout"):
        if all(s[a]["uniform"].get(split) is not None and s["single"].get(split) is not None
               for s in seeds_out for a in cands):
            gains = {a: st.mean(s[a]["uniform"][split] - s["single"][split] for s in seeds_out) for a in cands}
            out[split] = {"gains": gains, "spearman": spearman([gains[a] for a in cands], [ref[a] for a in cands])}
    return out


def resolved_pairs(per_seed: dict[str, list[float]], level: float = 0.05) -> list[tuple[str, str]]:
    """Candidate pairs (better, worse) whose reference gains differ on a paired t-test over seeds."""
    from scipy import stats

    out = []
    for a, b in itertools.combinations(per_seed, 2):
        diff = [x - y for x, y in zip(per_seed[a], per_seed[b])]
        if len(diff) > 1 and st.pstdev(diff) > 0 and stats.ttest_1samp(diff, 0.0).pvalue < level:
            out.append((a, b) if st.mean(diff) > 0 else (b, a))
    return out


def importance(method: str, res: dict, aux: str) -> float:
    if method == "avil" or VARIANTS.get(method, ("",))[0] == "avil" and method != "avil_prev":  # the share read-out
        return [r for r in res["rows"] if r["task"] == aux][-1]["importance"]
    return res["weights"][aux]


def share_fit_stats(runs: list[dict], aux_of: list[str]) -> dict | None:
    """How the share fits of these screens went, over every epoch: the share of fits that stopped at
    their start after one evaluation (the candidate's share exactly 0), of candidate shares beyond
    ±0.8 (the target's coefficient near 0: a ratio of small numbers), the fitted step's median and
    90th percentile (in target-update lengths), and the median untempered gain of the fitted mix
    over the target's own step on the fitting batch (nats): how much the fit found to read; and how
    many screens merged a mix whose untempered fitting loss was over twice both the epoch start's and
    the target's own step's (a long step whose logits the profiled temperature cooled), and how many
    the merge guard shortened (`auxsel.report.merge_outcome`, the report's reading of a row)."""
    from auxsel.report.tables import merge_outcome

    epochs, blown, shortened = [], 0, 0
    for run, aux in zip(runs, aux_of):
        rows = run.get("rows", [])
        if not rows or "share" not in rows[0] or "dev_loss_own" not in rows[0]:
            return None
        outcomes = {merge_outcome(r) for r in rows if r["task"] == rows[0]["task"]}
        blown += "blown" in outcomes
        shortened += "shortened" in outcomes
        for e in sorted({r["epoch"] for r in rows}):
            here = {r["task"]: r for r in rows if r["epoch"] == e}
            c = here[aux]
            epochs.append((c["fit_evals"] == 1, abs(c["share"]) > 0.8, c["step"], c["dev_loss_own"] - c["dev_loss_fit"]))
    if not epochs:
        return None
    steps = sorted(e[2] for e in epochs)
    return {"fits": len(epochs), "one_evaluation": st.mean(e[0] for e in epochs), "saturated": st.mean(e[1] for e in epochs),
            "step_median": st.median(steps), "step_p90": steps[int(0.9 * (len(steps) - 1))],
            "gain_over_own_median": st.median(e[3] for e in epochs), "screens": len(runs), "screens_blown": blown,
            "screens_shortened": shortened}


def verdict(checks: dict[str, bool | None]) -> bool | None:
    """False when a check fails, True when every check passes, None when none fails but one was not
    measured (the dev check needs avil_prev's screens beside avil's)."""
    if any(v is False for v in checks.values()):
        return False
    return True if all(v is True for v in checks.values()) else None


def summarise(pair: str, params: dict, seeds_out: list[dict], methods: list[str]) -> dict:
    spec = PAIRS[pair]
    cands, pos, shuf = params["candidates"], spec["positive"], spec["shuffled"]
    n = len(seeds_out)
    ref_seeds = {a: [s[a]["uniform"]["test"] - s["single"]["test"] for s in seeds_out] for a in cands}
    ref = {a: st.mean(v) for a, v in ref_seeds.items()}
    resolved = resolved_pairs(ref_seeds)
    out = {"name": spec["name"], "seeds": [s["seed"] for s in seeds_out], "candidates": cands, "reference": ref,
           "reference_per_seed": ref_seeds, "reference_reliability": reliability(ref_seeds),
           "reference_resolved_pairs": resolved, "dev_read": dev_read(seeds_out, cands, ref),
           "metric": seeds_out[0]["metric"], "methods": {}}
    # the methods asked for that every seed file has (a file may hold more: runs add methods to it)
    methods = [m for m in METHODS + ABLATIONS if m in methods and all(m in s[a] for s in seeds_out for a in cands)]
    prev_dev = st.mean(s[a]["avil_prev"]["dev"] for s in seeds_out for a in cands) if "avil_prev" in methods else None
    for m in [m for m in methods if m != "uniform"]:
        imp = {a: [importance(m, s[a][m], a) for s in seeds_out] for a in cands}
        top = sum(max(cands, key=lambda a: imp[a][i]) == pos for i in range(n))
        below_pos = sum(imp[shuf][i] < imp[pos][i] for i in range(n))
        # below the target's own level: a weight under 1 (the candidate's share under the target's)
        below_neutral = sum(s[shuf][m]["weights"][shuf] < 1.0 for s in seeds_out)
        below_zero = sum(imp[shuf][i] < 0.0 for i in range(n)) if m.startswith("avil") and m != "avil_prev" else None
        rho = spearman([st.mean(imp[a]) for a in cands], [ref[a] for a in cands])
        alike = sum(st.mean(imp[a]) > st.mean(imp[b]) for a, b in resolved)
        dev = st.mean(s[a][m]["dev"] for s in seeds_out for a in cands)
        checks = {"positive_top": top >= n - 1, "shuffled_below_positive": below_pos == n,
                  "shuffled_below_neutral": below_neutral >= n - 1, "spearman": rho >= 0.8 - 1e-9,
                  # None: not measured (avil_prev not run), and then no "pass" can be claimed
                  "dev_vs_avil_prev": None if prev_dev is None else dev >= prev_dev - 0.005}
        # what runs at the default 5 seeds would have scored against this (longer) reference
        blocks = [spearman([st.mean(imp[a][i:i + 5]) for a in cands], [ref[a] for a in cands])
                  for i in range(0, n - 4, 5)] if n >= 10 else None
        secs = st.mean(s[a][m]["seconds"] for s in seeds_out for a in cands)
        out["methods"][m] = {"importance": {a: [st.mean(v), st.stdev(v) if n > 1 else 0.0] for a, v in imp.items()},
                             "positive_top": top, "shuffled_below_positive": below_pos,
                             "shuffled_below_neutral": below_neutral, "shuffled_below_zero_share": below_zero,
                             "spearman": rho, "spearman_5_seed_blocks": blocks, "dev": dev, "resolved_alike": alike,
                             "importance_reliability": reliability(imp),
                             "seconds_per_screen": secs, "checks": checks, "pass": verdict(checks),
                             "fit_health": share_fit_stats([s[a][m] for s in seeds_out for a in cands],
                                                      [a for _ in seeds_out for a in cands])}
    out["methods"]["uniform"] = {"dev": st.mean(s[a]["uniform"]["dev"] for s in seeds_out for a in cands),
                                 "seconds_per_screen": st.mean(s[a]["uniform"]["seconds"] for s in seeds_out for a in cands)}
    for m, res in out["methods"].items():
        res["screen_gains"] = screen_gains(seeds_out, cands, pos, m)
    return out


def screen_gains(seeds_out: list[dict], cands: list[str], pos: str, method: str) -> dict:
    """What the selection reads off a screen: its paired gain over single-task, on the held-out dev
    half when the seed files have it (else dev). The positive control's mean and sd over seeds, and
    the worst gain of any candidate on any seed (a screen that training did not survive shows here)."""
    split = "holdout" if all(s[a][method].get("holdout") is not None and s["single"].get("holdout") is not None
                             for s in seeds_out for a in cands) else "dev"
    gain = {a: [s[a][method][split] - s["single"][split] for s in seeds_out] for a in cands}
    return {"split": split, "positive": [st.mean(gain[pos]), st.stdev(gain[pos]) if len(seeds_out) > 1 else 0.0],
            "worst": min(min(v) for v in gain.values())}


def table(results: dict) -> str:
    lines = []
    for pair, r in sorted(results.items()):
        n = len(r["seeds"])
        lines += [f"### ({pair}) {r['name']} — seeds {r['seeds']}", "",
                  f"`{r.get('command', '')}` — {r.get('date', '')}; {r.get('machine', '')}", "",
                  "| candidate | reference: uniform test gain | " + " | ".join(
                      f"{m} importance" for m in r["methods"] if m != "uniform") + " |",
                  "|---|---|" + "---|" * (len(r["methods"]) - 1)]
        for a in r["candidates"]:
            cells = [f"{r['methods'][m]['importance'][a][0]:+.3f} ± {r['methods'][m]['importance'][a][1]:.3f}"
                     for m in r["methods"] if m != "uniform"]
            lines.append(f"| {a} | {r['reference'][a]:+.4f} | " + " | ".join(cells) + " |")
        rel = r.get("reference_reliability")
        if rel:
            lines += ["", f"Reference reliability: split-half Spearman {rel['split_half']:+.2f} (mean over every split "
                      f"of the {n} seeds in two), {rel['all_seeds']:+.2f} for all {n} seeds (Spearman-Brown): a method "
                      f"that ranks perfectly expects Spearman ≈ {rel['ceiling']:.2f} against this reference. "
                      f"Candidate pairs the reference resolves (paired t-test over seeds, p < 0.05): "
                      + (", ".join(f"{a} > {b}" for a, b in r["reference_resolved_pairs"]) or "none") + "."]
        for split, what in (("dev", "on the half of dev that the fits read"), ("holdout", "on the held-out half of dev")):
            d = r.get("dev_read", {}).get(split)
            if d:
                lines += ["", f"Dev read: uniform's own gains measured {what} instead of test rank the candidates at "
                          f"Spearman {d['spearman']:+.2f} against the reference (" + ", ".join(
                              f"{a} {d['gains'][a]:+.4f}" for a in r["candidates"]) + "): how well the target's dev "
                          "data itself orders the very effects the reference measures on test."]
        lines += ["", f"| check | " + " | ".join(m for m in r["methods"] if m != "uniform") + " | uniform |",
                  "|---|" + "---|" * len(r["methods"])]
        ms = [m for m in r["methods"] if m != "uniform"]
        rows = [("positive control on top (≥ {}/{})".format(n - 1, n), "positive_top", "{}/" + str(n)),
                ("shuffled below positive ({0}/{0})".format(n), "shuffled_below_positive", "{}/" + str(n)),
                ("shuffled below the target's own level: weight < 1 (≥ {}/{})".format(n - 1, n), "shuffled_below_neutral",
                 "{}/" + str(n)),
                ("Spearman vs reference (≥ 0.8)", "spearman", "{:+.2f}")]
        for label, key, fmt in rows:
            lines.append(f"| {label} | " + " | ".join(fmt.format(r["methods"][m][key]) for m in ms) + " | — |")
        if rel:
            k = len(r["reference_resolved_pairs"])
            lines.append(f"| (not a check) resolved pairs ordered as the reference | " + " | ".join(
                f"{r['methods'][m]['resolved_alike']}/{k}" for m in ms) + " | — |")
            lines.append("| (not a check) importance reliability (split-half → all seeds) | " + " | ".join(
                f"{r['methods'][m]['importance_reliability']['all_seeds']:+.2f}" for m in ms) + " | — |")
        if all(r["methods"][m].get("spearman_5_seed_blocks") for m in ms):
            lines.append("| (not a check) Spearman of each 5-seed block (seeds 0–4, 5–9, …) vs this reference | " + " | ".join(
                ", ".join(f"{x:+.1f}" for x in r["methods"][m]["spearman_5_seed_blocks"]) for m in ms) + " | — |")
        if "avil" in ms:
            lines.append("| (stricter, not a check) shuffled share < 0 | " + " | ".join(
                f"{r['methods'][m]['shuffled_below_zero_share']}/{n}" if r["methods"][m].get("shuffled_below_zero_share") is not None
                else "—" for m in ms) + " | — |")
        if any(r["methods"][m].get("fit_health") for m in ms):
            fh = lambda m, f: f(r["methods"][m]["fit_health"]) if r["methods"][m].get("fit_health") else "—"  # noqa: E731
            lines.append("| (fits) stopped at the start / share beyond ±0.8 | " + " | ".join(
                fh(m, lambda h: f"{h['one_evaluation']:.0%} / {h['saturated']:.0%}") for m in ms) + " | — |")
            lines.append("| (fits) step median / p90, in target-update lengths | " + " | ".join(
                fh(m, lambda h: f"{h['step_median']:.1f} / {h['step_p90']:.1f}") for m in ms) + " | — |")
            lines.append("| (fits) untempered gain of the fit over the target's own step, median (nats) | " + " | ".join(
                fh(m, lambda h: f"{h['gain_over_own_median']:+.4f}") for m in ms) + " | — |")
            lines.append("| (fits) screens that merged a mix with untempered fitting loss > 2× its start's and the target step's | " + " | ".join(
                fh(m, lambda h: f"{h['screens_blown']}/{h['screens']}" if "screens_blown" in h else "—") for m in ms) + " | — |")
            lines.append("| (fits) screens where the merge guard shortened a mix (`merge_backtrack`) | " + " | ".join(
                fh(m, lambda h: f"{h['screens_shortened']}/{h['screens']}" if "screens_shortened" in h else "—") for m in ms) + " | — |")
        if all(r["methods"][m].get("screen_gains") for m in r["methods"]):
            g = {m: r["methods"][m]["screen_gains"] for m in r["methods"]}
            lines.append(f"| (screens) positive control's gain over single-task on {g['uniform']['split']}, mean ± sd | " + " | ".join(
                f"{g[m]['positive'][0]:+.4f} ± {g[m]['positive'][1]:.4f}" for m in r["methods"]) + " |")
            lines.append("| (screens) worst gain over single-task, any candidate and seed | " + " | ".join(
                f"{g[m]['worst']:+.4f}" for m in r["methods"]) + " |")
        lines.append(f"| screening dev {r['metric']} (mean) | " + " | ".join(
            f"{r['methods'][m]['dev']:.4f}" for m in r["methods"]) + " |")
        lines.append("| seconds per screen | " + " | ".join(
            f"{r['methods'][m]['seconds_per_screen']:.1f}" for m in r["methods"]) + " |")
        shown = {True: "pass", False: "FAIL", None: "no check fails; the dev check is not run (no avil_prev)"}
        lines.append("| **all checks** | " + " | ".join(shown[r["methods"][m]["pass"]] for m in ms) + " | — |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS + ABLATIONS,
                    help="ablations: " + "; ".join(f"{m}: {VARIANTS[m][1]}" for m in ABLATIONS))
    ap.add_argument("--jobs", type=int, default=2, help="seeds run at once (one core each)")
    ap.add_argument("--text-epochs", type=int, default=6)
    ap.add_argument("--frozen-encoder", action="store_true",
                    help="text pairs in the frozen-encoder screening mode (results under c-frozen / d-frozen)")
    ap.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "auxsel_ranking")
    ap.add_argument("--device", default="cpu", help="params `device` of every run (cpu, cuda)")
    ap.add_argument("--without-snakemake", action="store_true",
                    help="prepare the data by running the stages directly (a machine without Snakemake)")
    ap.add_argument("--summarise-only", action="store_true",
                    help="summarise the kept projects' seed files (every seed asked for must be there); run nothing")
    ap.add_argument("--results", default="ranking",
                    help="bench/results/<name>.{json,md} to update (default ranking: the checks at the default seeds; "
                         "runs over many more seeds go elsewhere, e.g. ranking_seeds20)")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        worker(args.worker, args.methods)
        return
    out_dir = ROOT / "bench" / "results"
    path = out_dir / f"{args.results}.json"
    done = {}
    for pair in args.pairs:
        t0 = time.time()
        if args.frozen_encoder and not PAIRS[pair].get("text"):
            raise SystemExit(f"--frozen-encoder applies to the text pairs (c, d), not {pair}")
        key = f"{pair}-frozen" if args.frozen_encoder else pair
        params = pair_params(pair, args.seeds, args.text_epochs, args.frozen_encoder)
        params["device"] = args.device
        project = args.workdir / key
        if args.summarise_only:  # the kept project's seed files as they are: no data step, no runs
            files = [project / "ranking" / f"seed-{s}.json" for s in args.seeds]
            missing = [str(f) for f in files if not f.is_file()]
            if missing:
                raise SystemExit(f"--summarise-only: no results for {missing}")
        else:
            prepare(pair, project, params, not args.without_snakemake)
            with ThreadPoolExecutor(args.jobs) as pool:
                files = list(pool.map(lambda s: run_seed(project, s, args.methods), args.seeds))
        seeds_out = [json.loads(f.read_text()) for f in files]
        res = summarise(pair, params, seeds_out, args.methods)
        if args.frozen_encoder:
            res["name"] += " (frozen-encoder mode: pooled MiniLM embeddings, 2-layer MLP, 10 epochs)"
        res.update(wall_seconds=time.time() - t0, project=str(project), date=f"{datetime.now():%Y-%m-%d %H:%M}",
                   command=f"python bench/bench_ranking.py --pairs {pair} --jobs {args.jobs}"
                           + (f" --seeds {' '.join(map(str, args.seeds))}" if args.seeds != [0, 1, 2, 3, 4] else "")
                           + (" --frozen-encoder" if args.frozen_encoder else "")
                           + (f" --methods {' '.join(args.methods)}" if args.methods != METHODS else "")
                           + (f" --device {args.device}" if args.device != "cpu" else "")
                           + (f" --results {args.results}" if args.results != "ranking" else ""),
                   machine=machine(args.device))
        if args.summarise_only and path.exists():  # the runs' own command, date and machine, not this call's
            before = json.loads(path.read_text())["pairs"].get(key, {})
            if before.get("seeds") == res["seeds"]:
                res.update({k: before[k] for k in ("command", "date", "machine", "wall_seconds") if k in before},
                           summarised=f"{datetime.now():%Y-%m-%d %H:%M}")
        done[key] = res
        print(table({key: res}), flush=True)
    saved = json.loads(path.read_text()) if path.exists() else {"pairs": {}}  # read last: other pairs may have run meanwhile
    saved["pairs"].update(done)
    for r in saved["pairs"].values():  # pairs measured before the machine was recorded per pair
        r.setdefault("machine", saved.get("machine"))
    saved.pop("machine", None)
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(saved, indent=1))
    head = ("Generated by bench/bench_ranking.py (each pair: its command, date and machine below).\n\n"
            "Importance: avil = mean share over epochs (0: no use to the target; the target's own share is "
            "the level a candidate as useful as the target's own update reaches); avil_prev, diw = final weight "
            "(target = 1). Reference = uniform's paired test gain over single-task.\n\n")
    (out_dir / f"{args.results}.md").write_text(head + table(saved["pairs"]) + "\n")


if __name__ == "__main__":
    main()
