"""What the share fit's stopping rule buys: every fit of real pairwise screens solved again, on the
same objective, under looser rules - evaluations spent and how far the candidate's share moves -
and, at the default rule, from two other paths to the same minimum that might spend fewer:
- "half batch first": L-BFGS on the first half of the fitting batch to fit_ftol 1e-4, then on the
  whole batch from there (a half-batch evaluation counts as half an evaluation);
- "previous fit's curvature": the solver works in coordinates preconditioned by the inverse
  Hessian at the previous epoch's fitted point (a finite-difference Hessian from K + 1 extra
  gradients, not counted: the most that carrying the curvature from one fit to the next can give).

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
from default_run import machine as cpu_kind  # noqa: E402

RULES = {"fit_ftol 1e-4": (None, 1e-4, 0.0), "fit_ftol 3e-4": (None, 3e-4, 0.0), "fit_ftol 1e-3": (None, 1e-3, 0.0),
         "fit_tol 3e-3, fit_ftol 1e-4": (3e-3, 1e-4, 0.0),
         # stops relative to the fit's own gain so far (fit_rtol; fit_ftol stays at its default)
         "fit_rtol 0.01": (None, None, 0.01), "fit_rtol 0.03": (None, None, 0.03), "fit_rtol 0.1": (None, None, 0.1)}
PATHS = ("half batch first", "previous fit's curvature")  # the default rule, other routes (module docstring)


def inverse_hessian(fn, v: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """A positive-definite inverse of fn's finite-difference Hessian at v (eigenvalues floored)."""
    def grad(x: torch.Tensor) -> torch.Tensor:
        x = x.detach().clone().requires_grad_(True)
        fn(x).backward()
        return x.grad.detach()

    g0, k = grad(v), len(v)
    h = torch.stack([(grad(v + eps * torch.eye(k, dtype=v.dtype)[i]) - g0) / eps for i in range(k)], 1)
    ev, vec = torch.linalg.eigh(0.5 * (h + h.T))
    ev = ev.clamp_min(1e-3 * float(ev.abs().max().clamp_min(1e-6)))
    return vec @ torch.diag(1 / ev) @ vec.T


def measure(tasks: dict, candidates: list[str], seeds: list[int], epochs: int) -> list[dict]:
    rows: list[dict] = []
    whitenings: list[torch.Tensor] = []
    objectives: list[avil_module.ShareObjective] = []
    previous: list[torch.Tensor | None] = [None]  # the inverse Hessian at the previous fit's point (this run)
    solve, whiten = avil_module.minimise, avil_module.ShareObjective.whitening

    def whitening(self):
        m = whiten(self)
        whitenings.append(m)
        objectives.append(self)
        return m

    def half_first(v0, tol, max_evals, ftol):
        o, m = objectives[-1], whitenings[-1]
        n = len(o.labels) // 2
        def copy(**changes) -> avil_module.ShareObjective:  # the same updates, θ and temperature rule; fresh state
            c = avil_module.ShareObjective.__new__(avil_module.ShareObjective)
            c.__dict__.update(o.__dict__, beta=1.0, solved=False, raw_start=None, last=None, **changes)
            return c

        half = copy(batch={k: x[:n] for k, x in o.batch.items()}, labels=o.labels[:n])  # class_weight: None by default
        first = solve(lambda b: half(m @ b), v0, tol, max_evals, 1e-4)
        fresh = copy()
        second = solve(lambda b: fresh(m @ b), first["v"], tol, max_evals, ftol)
        return {**second, "evals": first["evals"] / 2 + second["evals"], "second_evals": second["evals"]}

    def curvature_first(fn, v0, tol, max_evals, ftol):
        if previous[0] is None:
            return None
        chol = torch.linalg.cholesky(previous[0])
        out = solve(lambda z: fn(v0 + chol @ z), torch.zeros_like(v0), tol, max_evals, ftol)
        return {**out, "v": v0 + chol @ out["v"]}

    def minimise(fn, v0, tol, max_evals, ftol=0.0, rtol=0.0):
        m = whitenings[-1]
        share = lambda v: float((m @ v)[1] / (m @ v).abs().sum())  # noqa: E731 - the candidate's λ
        ref = solve(fn, v0, tol, max_evals, ftol)
        row = {"evals": ref["evals"], "share": share(ref["v"]), "loss": ref["loss"], "rules": {}}
        for name, (t, f, r) in RULES.items():
            o = solve(fn, v0, t if t is not None else tol, max_evals, f if f is not None else ftol, r)
            row["rules"][name] = {"evals": o["evals"], "share": share(o["v"]), "loss": o["loss"]}
        for name, o in zip(PATHS, (half_first(v0, tol, max_evals, ftol), curvature_first(fn, v0, tol, max_evals, ftol))):
            if o is not None:
                row["rules"][name] = {"evals": o["evals"], "share": share(o["v"]), "loss": o["loss"]}
                if "second_evals" in o:
                    row["rules"][name]["second_evals"] = o["second_evals"]
        previous[0] = inverse_hessian(fn, ref["v"])
        rows[-1]["fits"].append(row)
        return ref

    avil_module.minimise, avil_module.ShareObjective.whitening = minimise, whitening
    try:
        for aux in candidates:
            for seed in seeds:
                rows.append({"candidate": aux, "seed": seed, "fits": []})
                previous[0] = None
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
           "share_sd_over_epochs_median": spread, "rules": {},
           "half_first_second_stage_evals_mean": st.mean(f["rules"][PATHS[0]]["second_evals"] for f in fits)}
    for name in (*RULES, *PATHS):
        have = [f for f in fits if name in f["rules"]]  # the curvature path has no previous fit at epoch 1
        d = sorted(abs(f["rules"][name]["share"] - f["share"]) for f in have)
        out["rules"][name] = {"fits": len(have), "evals_mean": st.mean(f["rules"][name]["evals"] for f in have),
                              "default_evals_mean": st.mean(f["evals"] for f in have),
                              "share_err_median": st.median(d), "share_err_p90": d[int(0.9 * (len(d) - 1))],
                              "share_err_max": d[-1],
                              "loss_above_default_max": max(f["rules"][name]["loss"] - f["loss"] for f in have)}
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
    lines = [f"`{cmd}` — {datetime.now():%Y-%m-%d %H:%M}, {cpu_kind()['cpu']} ({platform.machine()}), torch {torch.__version__}, one thread",
             "", f"{s['fits']} share fits ({', '.join(args.candidates)} with target left, seeds {args.seeds}, "
             f"{args.epochs} epochs). Default rule (fit_tol {cfg.fit_tol:g}, fit_ftol {cfg.fit_ftol:g}): "
             f"{s['default']['evals_mean']:.2f} evaluations per fit (median {s['default']['evals_median']:g}). "
             f"Scale: the candidate's share moves by {s['share_sd_over_epochs_median']:.3f} (median sd over a run's epochs).",
             "", "| rule | fits | evaluations per fit (mean) | the default's on those fits | share error median | p90 | max | "
             "fitting loss above default (max, nats) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in s["rules"].items():
        lines.append(f"| {name} | {r['fits']} | {r['evals_mean']:.2f} | {r['default_evals_mean']:.2f} | {r['share_err_median']:.4f} | "
                     f"{r['share_err_p90']:.4f} | {r['share_err_max']:.4f} | {r['loss_above_default_max']:.1e} |")
    lines += ["", f"\"{PATHS[0]}\": its second stage, started at the half batch's minimum, alone spends "
              f"{s['half_first_second_stage_evals_mean']:.2f} whole-batch evaluations per fit."]
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "bench" / "results"
    (out / "fit_tolerance.md").write_text(text)
    (out / "fit_tolerance.json").write_text(json.dumps({"summary": s, "runs": rows, "command": cmd}, indent=1))


if __name__ == "__main__":
    main()
