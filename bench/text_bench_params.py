"""params.yaml for the text-pool paper table: configs/text.yaml scaled to run in under an hour on 2 CPU cores.

The pool, splits and tasks are those of configs/text.yaml; only sizes change (each candidate's
training set capped, shorter inputs, fewer epochs, more frozen encoder layers) and every final method is run:

    python bench/text_bench_params.py > /path/to/project/params.yaml

The overrides are printed as a comment at the top of the output, so the project records them.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["single", "uniform_all", "diw_all", "avil_literal_all", "avil_all", "fixed", "avil"]


def scaled(base: dict, candidate_train: int, epochs: int, freeze_layers: int, max_length: int, seeds: list[int],
           candidates: list[str] | None = None) -> dict:
    """configs/text.yaml with smaller candidates, fewer epochs and all final methods."""
    p = copy.deepcopy(base)
    if candidates:
        unknown = sorted(set(candidates) - set(p["candidates"]))
        if unknown:
            raise SystemExit(f"--candidates: {unknown} not in configs/text.yaml's pool {p['candidates']}")
        p["candidates"] = list(candidates)
        p["tasks"] = {t: spec for t, spec in p["tasks"].items() if t == p["target"] or t in candidates}
    p["seeds"] = list(seeds)
    p["train"]["epochs"] = epochs
    p["model"]["freeze_layers"] = freeze_layers
    p["model"]["max_length"] = max_length
    p["final"]["methods"] = list(METHODS)
    for name in p["candidates"]:
        p["tasks"][name]["max_train"] = min(int(p["tasks"][name]["max_train"]), candidate_train)
    return p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidate-train", type=int, default=500, help="training examples per candidate (target keeps 500)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--freeze-layers", type=int, default=4, help="of MiniLM's 6 layers")
    ap.add_argument("--max-length", type=int, default=32, help="tokens per example (snippets are ~25)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--candidates", nargs="+", help="a subset of the pool (default: all of it)")
    args = ap.parse_args()
    base = yaml.safe_load((ROOT / "configs/text.yaml").read_text())
    out = scaled(base, args.candidate_train, args.epochs, args.freeze_layers, args.max_length, args.seeds, args.candidates)
    sys.stdout.write(f"# generated: python bench/text_bench_params.py --candidate-train {args.candidate_train} "
                     f"--epochs {args.epochs} --freeze-layers {args.freeze_layers} --max-length {args.max_length} --seeds {' '.join(map(str, args.seeds))}"
                     + (f" --candidates {' '.join(args.candidates)}" if args.candidates else "") + "\n"
                     "# (configs/text.yaml, scaled for a 2-core CPU)\n")
    yaml.safe_dump(out, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
