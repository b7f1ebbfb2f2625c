"""The controls at full size: single / uniform / fixed / DIW / literal αVIL / αVIL on the default
MultiMNIST pool, several seeds, printed as mean ± std (the evidence table in docs/methods.md).

    PYTHONPATH=src python bench/bench_controls.py [--seeds 0,1,2,3,4] [--runs all|NAME,...] [--mnist PATH]

Pool (bench_cost.pool): target `left` = left digit of MultiMNIST from MNIST images 60000:70000
(train 1,000 canvases from 60000:63000, dev 500 from 63000:64000, test 2,000 from 64000:70000;
standard layout, shift 4). Candidates on disjoint images: `left_more` (positive control: left digit,
images 0:20000, 10,000 canvases, shift 6), `right` (right digit, 20000:30000, 3,000),
`mnist` (centred plain MNIST, 30000:40000, 3,000), `shuffled` (left digit, 40000:50000, 3,000,
labels permuted per example). Model: LeNet trunk; train section defaults (10 epochs, SGD lr 0.02,
momentum 0.9, batch 32, 1,000 examples per task per epoch).

Runs are named METHOD:AUX[+AUX...] ("single" for single-task). Writes bench/results/controls.{md,json}
(one file per invocation; --tag names it). One run takes 5-40 s on one CPU core.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_cost import DEFAULT_MNIST, pool  # noqa: E402

from auxsel.methods import run_method  # noqa: E402
from auxsel.models import build_model  # noqa: E402

POOL = ["left_more", "right", "shuffled"]
CANDIDATES = ["left_more", "right", "mnist", "shuffled"]
ALL = (["single"] + [f"uniform:{a}" for a in CANDIDATES] + [f"avil:{a}" for a in CANDIDATES]
       + [f"{m}:{'+'.join(POOL)}" for m in ("uniform", "diw", "avil_literal", "avil")])


def fmt(xs: list[float]) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.3f} ± {sd:.3f}"


def one(tasks, name: str, seeds: list[int], options: dict | None) -> dict:
    method, _, auxs = name.partition(":")
    aux = [a for a in auxs.split("+") if a]
    run_tasks = {"left": tasks["left"], **{a: tasks[a] for a in aux}}
    out = {"run": name, "seeds": seeds, "test": [], "dev": [], "weights": {a: [] for a in aux}, "seconds": [],
           "best_epoch": []}
    for seed in seeds:
        m = build_model({"kind": "lenet"}, {t: 10 for t in run_tasks}, seed=seed)
        t0 = time.perf_counter()
        r = run_method(method, m, run_tasks, "left", seed=seed, options=options if method.startswith("avil") else None)
        out["seconds"].append(time.perf_counter() - t0)
        out["test"].append(r.metrics["test"]["accuracy"])
        out["dev"].append(r.metrics["dev"]["accuracy"])
        out["best_epoch"].append(r.best_epoch)
        for a in aux:
            out["weights"][a].append(r.final_weights[a])
        print(f"  {name} seed {seed}: test {out['test'][-1]:.4f} dev {out['dev'][-1]:.4f} "
              f"weights { {a: round(r.final_weights[a], 3) for a in aux} } {out['seconds'][-1]:.1f}s", flush=True)
    if "left_more" in aux and len(aux) > 1 and method != "uniform":
        others = [a for a in aux if a != "left_more"]
        out["positive_top"] = sum(all(out["weights"]["left_more"][i] > out["weights"][a][i] for a in others)
                                  for i in range(len(seeds)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--runs", default="all", help=f"comma-separated; all = {','.join(ALL)}")
    ap.add_argument("--avil", default="{}", help="JSON overrides of the avil options (e.g. '{\"alpha_steps\": 8}')")
    ap.add_argument("--mnist", default=next((p for p in DEFAULT_MNIST if p and Path(p).is_file()), None))
    ap.add_argument("--tag", default="controls")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if not args.mnist:
        sys.exit("MNIST pickle not found: pass --mnist or set AUXSEL_MNIST_PKL")
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    names = ALL if args.runs == "all" else args.runs.split(",")
    tasks = pool(args.mnist)
    options = json.loads(args.avil) or None
    results = [one(tasks, n, seeds, options) for n in names]
    lines = ["| run | seeds | target test acc | target dev acc | final weights (mean ± std) | positive control top |",
             "|---|---|---|---|---|---|"]
    for r in results:
        w = ", ".join(f"{a} {fmt(v)}" for a, v in r["weights"].items()) if not r["run"].startswith(("uniform", "single")) else "—"
        top = f"{r['positive_top']} of {len(r['seeds'])}" if "positive_top" in r else "—"
        lines.append(f"| {r['run']} | {len(r['seeds'])} | {fmt(r['test'])} | {fmt(r['dev'])} | {w} | {top} |")
    cmd = "PYTHONPATH=src python bench/bench_controls.py " + " ".join(sys.argv[1:])
    text = f"# {args.tag}\n\n`{cmd.strip()}` (torch {torch.__version__}, {args.threads} thread)\n\n" + "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "bench/results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.tag}.md").write_text(text)
    (out / f"{args.tag}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
