"""Cost benchmark for the methods, printed as ratios measured side by side in one run.

    PYTHONPATH=src python bench/bench_cost.py [--mnist PATH] [--device cpu|cuda] [--epochs 4] [--repeats 3]
        [--avil '{"dev_batch": 128}' --results bench_cost_b128]   # αVIL with params overrides, to its own file

1. One αVIL epoch (`avil` defaults) vs one `uniform` epoch over the same examples. K = 4 tasks
   (target `left` + left_more, right, shuffled); in both, every task contributes
   `examples_per_task` = 1,000 examples (the target's training-set size), so each of the K task
   updates sees 1/K of the epoch's 4,000 examples (ρ = 1/K of the epoch) and both methods train on
   exactly the same number of examples. Both epochs include the same target-dev evaluation.
   Target: ≤ 1.5×. The same again for K = 2 (a pairwise screen: left + left_more), and the previous
   `avil` (α read-out, `auxsel.methods.avil.PREVIOUS`) beside it.
2. The shared training loop (`single` through auxsel.train.fit) vs a bare PyTorch loop on the same
   model, the same index batches, the same per-epoch dev evaluation and the same final dev + test
   evaluation; throughput = training examples / wall time of the whole call. Target: ≥ 0.9×.
3. Peak memory of an αVIL run vs a uniform run (each in a fresh subprocess: peak RSS on CPU, peak
   allocated on CUDA), beside the αVIL buffer sizes (deltas K×P×4 bytes).

Writes bench/results/bench_cost.{md,json}. Timings are medians over epochs 2..E and best of
`--repeats` alternating runs, to keep a busy machine's noise out of the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from auxsel.methods import run_method  # noqa: E402
from auxsel.models import build_model  # noqa: E402
from auxsel.tasks.mnist import centered, load_mnist, multimnist  # noqa: E402
from auxsel.tasks.tensors import TaskData  # noqa: E402
from auxsel.train import TaskStream, evaluate  # noqa: E402

COST_TASKS = ("left", "left_more", "right", "shuffled")
DEFAULT_MNIST = [os.environ.get("AUXSEL_MNIST_PKL"), str(ROOT / "data/raw/mnist/mnist.pkl.gz")]


def pool(path: str) -> dict[str, TaskData]:
    imgs, labs = load_mnist(Path(path))

    def mm(rng, n, seed, shift=4, key="left"):
        d = multimnist(imgs, labs, rng, n, seed, shift=shift)
        return {"image": torch.from_numpy(d["image"]), "label": torch.from_numpy(d[key]).long()}

    c = centered(imgs, labs, "30000:40000", 3000, 6)
    sh = mm("40000:50000", 3000, 7)
    sh["label"] = torch.from_numpy(np.random.default_rng(8).permutation(sh["label"].numpy()))
    tasks = [
        TaskData("left", 10, splits={"train": mm("60000:63000", 1000, 1), "dev": mm("63000:64000", 500, 2),
                                     "test": mm("64000:70000", 2000, 3)}),
        TaskData("left_more", 10, splits={"train": mm("0:20000", 10000, 4, shift=6)}),
        TaskData("right", 10, splits={"train": mm("20000:30000", 3000, 5, key="right")}),
        TaskData("mnist", 10, splits={"train": {"image": torch.from_numpy(c["image"]), "label": torch.from_numpy(c["label"]).long()}}),
        TaskData("shuffled", 10, splits={"train": sh}),
    ]
    return {t.name: t for t in tasks}


def epoch_seconds(method: str, tasks, epochs: int, device: str, options: dict | None = None) -> tuple[float, dict]:
    m = build_model({"kind": "lenet"}, {t: 10 for t in tasks}, seed=0)
    r = run_method(method, m, tasks, "left", seed=0, train={"epochs": epochs, "device": device}, options=options)
    secs = [h["seconds"] for h in r.history if h["split"] == "dev"][1:]
    extra = {}
    if method.startswith("avil"):
        rows = [w for w in r.weights if w["task"] == "left" and w["epoch"] > 1]
        extra = {"update_s": statistics.median(w["update_seconds"] for w in rows),
                 "solve_s": statistics.median(w["solve_seconds"] for w in rows),
                 "evals": statistics.median(w.get("fit_evals", w.get("alpha_evals", 0)) for w in rows),
                 "converged": sum(bool(w.get("fit_converged", False)) for w in rows) / len(rows)}
    return statistics.median(secs), extra


def bare_loop(tasks, epochs: int, device: str, batch_size: int = 32) -> float:
    """Plain PyTorch: the same model, index batches (same seeded stream), SGD and dev evaluation."""
    torch.manual_seed(0)
    dev = torch.device(device)
    t = tasks["left"]
    m = build_model({"kind": "lenet"}, {"left": 10}, seed=0).to(dev)
    opt = torch.optim.SGD(m.parameters(), lr=0.02, momentum=0.9)
    x = t.splits["train"]["image"].to(dev)
    y = t.splits["train"]["label"].to(dev)
    stream = TaskStream(len(y), torch.Generator().manual_seed(0 * 7919 + 1))
    n = len(y)
    t0 = time.perf_counter()
    for _ in range(epochs):
        m.train()
        for idx in stream.take(n).split(batch_size):
            idx = idx.to(dev)
            loss = F.cross_entropy(m({"image": x[idx]}, "left"), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        evaluate(m, t, "dev", 256, dev)
    evaluate(m, t, "dev", 256, dev)  # the shared loop reports dev and test at the end: same work here
    evaluate(m, t, "test", 256, dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return epochs * n / (time.perf_counter() - t0)


def shared_loop(tasks, epochs: int, device: str) -> float:
    m = build_model({"kind": "lenet"}, {"left": 10}, seed=0)
    t0 = time.perf_counter()
    run_method("single", m, {"left": tasks["left"]}, "left", seed=0, train={"epochs": epochs, "device": device})
    return epochs * tasks["left"].size("train") / (time.perf_counter() - t0)


def child_memory(method: str, mnist: str, device: str, options: dict | None = None) -> None:
    tasks = {t: v for t, v in pool(mnist).items() if t in COST_TASKS}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    m = build_model({"kind": "lenet"}, {t: 10 for t in tasks}, seed=0)
    run_method(method, m, tasks, "left", seed=0, train={"epochs": 2, "device": device},
               options=options if method == "avil" else None)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"rss_growth_mb": (peak - before) / 1024, "rss_peak_mb": peak / 1024}
    if device.startswith("cuda"):
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist", default=next((p for p in DEFAULT_MNIST if p and Path(p).is_file()), None))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "bench/results"))
    ap.add_argument("--avil", type=json.loads, default=None,
                    help="overrides of the avil params (JSON) for its rows, e.g. '{\"dev_batch\": 128}'")
    ap.add_argument("--results", default=None, help="results file name (default bench_cost[_<device>])")
    ap.add_argument("--child-memory", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.mnist:
        sys.exit("MNIST pickle not found: pass --mnist or set AUXSEL_MNIST_PKL")
    torch.set_num_threads(args.threads)
    if args.child_memory:
        return child_memory(args.child_memory, args.mnist, args.device, args.avil)

    tasks = {t: v for t, v in pool(args.mnist).items() if t in COST_TASKS}
    rows = []
    # 1. αVIL epoch vs uniform epoch (alternating, best of repeats): K = 4 (a final run over a pool)
    #    and K = 2 (a pairwise screen), the current default and the previous one (α read-out)
    from auxsel.methods.avil import PREVIOUS

    for label, names in (("K=4", COST_TASKS), ("K=2 (pairwise screen)", ("left", "left_more"))):
        sub = {t: tasks[t] for t in names}
        uni, avl, prev, parts, pparts = [], [], [], [], []
        for _ in range(args.repeats):
            uni.append(epoch_seconds("uniform", sub, args.epochs, args.device)[0])
            s, extra = epoch_seconds("avil", sub, args.epochs, args.device, args.avil)
            avl.append(s)
            parts.append(extra)
            s, extra = epoch_seconds("avil", sub, args.epochs, args.device, dict(PREVIOUS))
            prev.append(s)
            pparts.append(extra)
        u, a, pv = min(uni), min(avl), min(prev)
        best, pbest = parts[avl.index(a)], pparts[prev.index(pv)]
        rows.append((f"αVIL epoch / uniform epoch ({label}, 1,000 examples per task)", a / u, "≤ 1.5",
                     f"avil {a:.2f}s (task updates {best['update_s']:.2f}s, share fit+merge {best['solve_s']:.2f}s, "
                     f"median {best['evals']:.0f} evaluations, tolerance met on {best['converged']:.0%} of fits), uniform {u:.2f}s"))
        rows.append((f"previous αVIL (α read-out, 4 evaluations) epoch / uniform epoch ({label})", pv / u, "—",
                     f"avil_prev {pv:.2f}s (α fit+merge {pbest['solve_s']:.2f}s), uniform {u:.2f}s"))
    # 2. shared loop vs bare loop
    sh, bare = [], []
    for _ in range(args.repeats):
        bare.append(bare_loop(tasks, args.epochs, args.device))
        sh.append(shared_loop(tasks, args.epochs, args.device))
    rows.append(("shared loop / bare PyTorch loop throughput", max(sh) / max(bare), "≥ 0.9",
                 f"shared {max(sh):.0f} ex/s, bare {max(bare):.0f} ex/s"))
    # 3. memory, each method in a fresh process
    mem = {}
    for method in ("uniform", "avil"):
        out = subprocess.run([sys.executable, __file__, "--mnist", args.mnist, "--device", args.device,
                              "--threads", str(args.threads), "--child-memory", method]
                             + (["--avil", json.dumps(args.avil)] if args.avil else []),
                             capture_output=True, text=True, check=True)
        mem[method] = json.loads(out.stdout.strip().splitlines()[-1])
    key = "cuda_peak_mb" if args.device.startswith("cuda") else "rss_peak_mb"
    m = build_model({"kind": "lenet"}, {t: 10 for t in tasks}, seed=0)
    n_params = sum(p.numel() for p in m.parameters())
    rows.append((f"peak memory αVIL / uniform ({key})", mem["avil"][key] / mem["uniform"][key], "—",
                 f"avil {mem['avil'][key]:.1f} MB, uniform {mem['uniform'][key]:.1f} MB; "
                 f"deltas K×P×4 = 4×{n_params}×4 B = {4 * n_params * 4 / 2**20:.2f} MB "
                 f"(+ the same again for the per-task momentum)"))

    from default_run import machine  # the CPU model: timings and numbers differ between CPU kinds

    dev_name = (torch.cuda.get_device_name() if args.device.startswith("cuda")
                else f"{machine()['cpu'] or platform.processor()}, {platform.machine()}")
    header = (f"device {args.device} ({dev_name}), torch {torch.__version__}, threads {args.threads}, "
              f"epochs {args.epochs}, repeats {args.repeats}")
    from datetime import datetime

    command = "PYTHONPATH=src python bench/bench_cost.py" + (f" --avil '{json.dumps(args.avil)}'" if args.avil else "") + (
        f" --results {args.results}" if args.results else "")
    if args.avil:
        header += f", avil overrides {json.dumps(args.avil)}"
    lines = [f"`{command}` — {datetime.now():%Y-%m-%d %H:%M}, {header}", "",
             "| measure | ratio | target | detail |", "|---|---|---|---|"]
    lines += [f"| {n} | {r:.2f}× | {t} | {d} |" for n, r, t, d in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = args.results or "bench_cost" + ("" if args.device == "cpu" else f"_{args.device.replace(':', '')}")
    (out / f"{name}.md").write_text(text)
    (out / f"{name}.json").write_text(json.dumps(
        {"header": header, "rows": [{"measure": n, "ratio": r, "target": t, "detail": d} for n, r, t, d in rows],
         "memory": mem}, indent=2))


if __name__ == "__main__":
    main()
