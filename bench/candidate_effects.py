"""Each candidate's effect on the target under uniform weighting (target + that candidate).

Reads the prepared tasks of a params file (run `snakemake --cores 2 data/prepared/...` or the
prepare stage first), trains single-task and uniform {target, a} for every candidate over the
seeds given, and prints target test accuracy mean ± std and the paired gain per candidate.
Writes bench/results/candidate_effects.{json,md}.

    python bench/candidate_effects.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import statistics as st
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stages import _common  # noqa: E402

from auxsel.methods import run_method  # noqa: E402
from auxsel.models import build_model  # noqa: E402
from auxsel.seeding import derive_seed  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--method", default="uniform")
    args = ap.parse_args()
    torch.set_num_threads(1)
    params = _common.load_params(args.params)
    target = params["target"]
    tasks = _common.load_tasks(params, [target, *params["candidates"]])
    train = _common.train_section(params)
    results: dict[str, list[float]] = {}
    for aux in [None, *params["candidates"]]:
        names = [target] if aux is None else [target, aux]
        key = "single" if aux is None else aux
        results[key] = []
        for seed in args.seeds:
            t0 = time.time()
            model = build_model(_common.model_spec(params), {n: tasks[n].num_classes for n in names}, seed=derive_seed(params["seed"], "init", target, seed))
            r = run_method("single" if aux is None else args.method, model, {n: tasks[n] for n in names}, target,
                           seed=derive_seed(params["seed"], "bench", target, key, seed), train=train)
            results[key].append(r.metrics["test"][tasks[target].metric])
            print(f"{key:<12} seed {seed}: test {results[key][-1]:.4f} ({time.time() - t0:.1f}s)", flush=True)
    base = results["single"]
    lines = [f"| candidate | target test {tasks[target].metric} ({args.method}, {len(args.seeds)} seeds) | paired gain vs single |", "|---|---|---|"]
    for key, vals in results.items():
        gains = [v - b for v, b in zip(vals, base)]
        lines.append(f"| {key} | {st.mean(vals):.3f} ± {st.stdev(vals):.3f} | {'—' if key == 'single' else f'{st.mean(gains):+.3f} ± {st.stdev(gains):.3f}'} |")
    table = "\n".join(lines)
    print(table)
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "candidate_effects.json").write_text(json.dumps({"seeds": args.seeds, "method": args.method, "test": results}, indent=2))
    (out / "candidate_effects.md").write_text(f"Command: python bench/candidate_effects.py --seeds {' '.join(map(str, args.seeds))}\n\n{table}\n")


if __name__ == "__main__":
    main()
