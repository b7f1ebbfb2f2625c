"""params.yaml for the text-pool paper table: configs/text.yaml scaled to run in under an hour on 2 CPU cores.

The pool, splits and tasks are those of configs/text.yaml; only sizes change (each candidate's
training set capped, shorter inputs, fewer epochs, more frozen encoder layers) and every final method is run.
The positive control (`sentiment_more`: more data of the target's own task) is never capped to a
candidate's size: it keeps at least `--positive-train` (2,000) training examples, so an epoch's 500
draws walk through new snippets instead of re-reading the same 500 like the target does.
`--frozen-encoder` gives the cheapest screening mode: every encoder layer frozen (pooled sentence
embeddings computed once by the features stage) under a shared trainable MLP.

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
POSITIVE_CONTROLS = ("sentiment_more",)  # more data of the target's own task: never capped below positive_train
MINILM_DEPTH = 6


def scaled(base: dict, candidate_train: int, epochs: int, freeze_layers: int, max_length: int, seeds: list[int],
           candidates: list[str] | None = None, positive_train: int = 2000, mlp_layers: int = 0,
           mlp_width: int = 256, methods: list[str] | None = None,
           positive: tuple[str, ...] = POSITIVE_CONTROLS) -> dict:
    """configs/text.yaml with smaller candidates (the positive control excepted), fewer epochs and
    all final methods."""
    p = copy.deepcopy(base)
    if candidates:
        unknown = sorted(set(candidates) - set(p["candidates"]))
        if unknown:
            raise SystemExit(f"--candidates: {unknown} not in the pool {p['candidates']}")
        p["candidates"] = list(candidates)
        p["tasks"] = {t: spec for t, spec in p["tasks"].items() if t == p["target"] or t in candidates}
    p["seeds"] = list(seeds)
    p["train"]["epochs"] = epochs
    p["model"]["freeze_layers"] = freeze_layers
    p["model"]["max_length"] = max_length
    if mlp_layers:
        p["model"].update(mlp_layers=mlp_layers, mlp_width=mlp_width)
    p["final"]["methods"] = list(methods or METHODS)
    for name in p["candidates"]:
        cap = positive_train if name in positive else candidate_train
        p["tasks"][name]["max_train"] = cap if name in positive else min(int(p["tasks"][name]["max_train"]), cap)
    return p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidate-train", type=int, default=500, help="training examples per candidate (target keeps 500)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--freeze-layers", type=int, default=4, help="of MiniLM's 6 layers")
    ap.add_argument("--max-length", type=int, default=32, help="tokens per example (snippets are ~25)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--candidates", nargs="+", help="a subset of the pool (default: all of it)")
    ap.add_argument("--positive-train", type=int, default=2000,
                    help="training examples of the positive control (never capped to --candidate-train)")
    ap.add_argument("--frozen-encoder", action="store_true",
                    help="freeze all of MiniLM's layers (pooled embeddings cached) under a shared MLP")
    ap.add_argument("--mlp-layers", type=int, default=2, help="with --frozen-encoder: depth of the shared MLP")
    ap.add_argument("--mlp-width", type=int, default=256, help="with --frozen-encoder: width of the shared MLP")
    ap.add_argument("--epochs-frozen", type=int, default=10, help="with --frozen-encoder: epochs (cheap)")
    ap.add_argument("--lr-frozen", type=float, default=1e-3, help="with --frozen-encoder: AdamW lr for the MLP")
    ap.add_argument("--methods", nargs="+", help=f"final methods (default: {' '.join(METHODS)})")
    ap.add_argument("--amp", action="store_true", help="train.amp: bf16 autocast (changes the numbers)")
    args = ap.parse_args()
    base = yaml.safe_load((ROOT / "configs/text.yaml").read_text())
    if args.frozen_encoder:
        out = scaled(base, args.candidate_train, args.epochs_frozen, MINILM_DEPTH, args.max_length, args.seeds,
                     args.candidates, args.positive_train, args.mlp_layers, args.mlp_width, args.methods)
        out["train"]["lr"] = args.lr_frozen
    else:
        out = scaled(base, args.candidate_train, args.epochs, args.freeze_layers, args.max_length, args.seeds,
                     args.candidates, args.positive_train, methods=args.methods)
    if args.amp:
        out["train"]["amp"] = True
    sys.stdout.write("# generated: python bench/text_bench_params.py " + " ".join(sys.argv[1:]) + "\n"
                     "# (configs/text.yaml, scaled for a 2-core CPU; the positive control sentiment_more keeps "
                     f"{args.positive_train} training examples of the target's own task, the shuffled labels stay "
                     "the harmful control)\n")
    yaml.safe_dump(out, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
