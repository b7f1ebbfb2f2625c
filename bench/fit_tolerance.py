"""What the share fit's stopping rule buys: every fit of real pairwise screens solved again, on the
same objective, under looser rules - evaluations spent and how far the candidate's share moves.

Each pair {left, candidate} of bench_cost.py's vision pool trains with `avil` defaults (6 epochs,
the seeds given); at every epoch the fit that training goes on from is the default one, and the
same objective (same parameters, updates and fitting batch) is also minimised under each rule
below. The share error is |λ_rule − λ_default| of the candidate; the epoch-to-epoch sd of the
default shares is printed beside it as the scale that matters (importance is a mean over epochs).

    PYTHONPATH=src python bench/fit_tolerance.py [--seeds 0 1 2] [--candidates left_more shuffled mnist]

Writes bench/results/fit_tolerance.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics as st
import sys
from datetime import datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import auxsel.methods.avil as avil_module  # noqa: E402
from auxsel.methods import AvilConfig, run_method  # noqa: E402
from auxsel.models import build_model  # noqa: E402
from bench_cost import DEFAULT_MNIST, pool  # noqa: E402

RULES = {"fit_ftol 1e-4": (None, 1e-4), "fit_ftol 3e-4": (None, 3e-4), "fit_ftol 1e-3": (None, 1e-3),
         "fit_tol 3e-3, fit_ftol 1e-4": (3e-3, 1e-4)}


def measure(tasks: dict, candidates: list[str], seeds: list[int], epochs: int) -> list[dict]:
    rows: list[dict] = []
    whitenings: list[torch.Tensor] = []
    solve, whiten = avil_module.minimise, avil_module.ShareObjective.whitening

    def whitening(self):
        m = whiten(self)
        whitenings.append(m)
        return m

    def minimise(fn, v0, tol, max_evals, ftol=0.0):
        m = whitenings[-1]
        share = lambda v: float((m @ v)[1] / (m @ v).abs().sum())  # noqa: E731 - the candidate's λ
        ref = solve(fn, v0, tol, max_evals, ftol)
        row = {"evals": ref["evals"], "share": share(ref["v"]), "loss": ref["loss"], "rules": {}}
        for name, (t, f) in RULES.items():
            o = solve(fn, v0, t if t is not None else tol, max_evals, f)
            row["rules"][name] = {"evals": o["evals"], "share": share(o["v"]), "loss": o["loss"]}
        rows[-1]["fits"].append(row)
        return ref

    avil_module.minimise, avil_module.ShareObjective.whitening = minimise, whitening
    try:
        for aux in candidates:
            for seed in seeds:
                rows.append({"candidate": aux, "seed": seed, "fits": []})
                pair = {t: tasks[t] for t in ("left", aux)}
                model = build_model({"kind": "lenet"}, {t: 10 for t in pair}, seed=seed)
                run_method("avil", model, pair, "left", seed=seed, train={"epochs": epochs})
                print(f"{aux} seed {seed}: {len(rows[-1]['fits'])} fits", flush=True)
    finally:
        avil_module.minimise, avil_module.ShareObjective.whitening = solve, whiten
    return rows


def summary(rows: list[dict]) -> dict:
    fits = [f for r in rows for f in r["fits"]]
    spread = st.median(st.pstdev(f["share"] for f in r["fits"]) for r in rows)
    out = {"fits": len(fits), "default": {"evals_mean": st.mean(f["evals"] for f in fits),
                                          "evals_median": st.median(f["evals"] for f in fits)},
           "share_sd_over_epochs_median": spread, "rules": {}}
    for name in RULES:
        d = sorted(abs(f["rules"][name]["share"] - f["share"]) for f in fits)
        out["rules"][name] = {"evals_mean": st.mean(f["rules"][name]["evals"] for f in fits),
                              "share_err_median": st.median(d), "share_err_p90": d[int(0.9 * (len(d) - 1))],
                              "share_err_max": d[-1],
                              "loss_above_default_max": max(f["rules"][name]["loss"] - f["loss"] for f in fits)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--candidates", nargs="+", default=["left_more", "shuffled", "mnist"])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--mnist", default=next((p for p in DEFAULT_MNIST if p and Path(p).is_file()), None))
    args = ap.parse_args()
    if not args.mnist:
        raise SystemExit("no mnist.pkl.gz: run `python -m stages.fetch --archive mnist` or pass --mnist")
    torch.set_num_threads(1)
    rows = measure(pool(args.mnist), args.candidates, args.seeds, args.epochs)
    s = summary(rows)
    cfg = AvilConfig()
    cmd = "PYTHONPATH=src python bench/fit_tolerance.py" + (f" --seeds {' '.join(map(str, args.seeds))}" if args.seeds != [0, 1, 2] else "")
    lines = [f"`{cmd}` — {datetime.now():%Y-%m-%d %H:%M}, {platform.machine()} CPU, torch {torch.__version__}, one thread",
             "", f"{s['fits']} share fits ({', '.join(args.candidates)} with target left, seeds {args.seeds}, "
             f"{args.epochs} epochs). Default rule (fit_tol {cfg.fit_tol:g}, fit_ftol {cfg.fit_ftol:g}): "
             f"{s['default']['evals_mean']:.2f} evaluations per fit (median {s['default']['evals_median']:g}). "
             f"Scale: the candidate's share moves by {s['share_sd_over_epochs_median']:.3f} (median sd over a run's epochs).",
             "", "| rule | evaluations per fit (mean) | share error median | p90 | max | fitting loss above default (max, nats) |",
             "|---|---|---|---|---|---|"]
    for name, r in s["rules"].items():
        lines.append(f"| {name} | {r['evals_mean']:.2f} | {r['share_err_median']:.4f} | {r['share_err_p90']:.4f} | "
                     f"{r['share_err_max']:.4f} | {r['loss_above_default_max']:.1e} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "bench" / "results"
    (out / "fit_tolerance.md").write_text(text)
    (out / "fit_tolerance.json").write_text(json.dumps({"summary": s, "runs": rows, "command": cmd}, indent=1))


if __name__ == "__main__":
    main()
