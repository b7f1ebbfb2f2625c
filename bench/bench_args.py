"""Command-line pieces the whole-pipeline benches share (bench_selection, selection_power,
default_run), so a variant run is asked for, named and guarded the same way everywhere."""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path


def add_variant_args(ap: argparse.ArgumentParser, results: str) -> None:
    """--avil (overrides of the params' avil section), --target-task (of the target's task spec),
    --train (of the train section: baselines and screens; finals keep final.train) and --results
    (the file a variant goes to)."""
    ap.add_argument("--avil", type=json.loads, default=None,
                    help="overrides of the params' avil section (JSON), e.g. '{\"merge_backtrack\": 8}'; use with --results")
    ap.add_argument("--target-task", type=json.loads, default=None,
                    help="overrides of the target's task spec (JSON), e.g. '{\"dev_fraction\": 0.3, \"max_dev\": 900}'; "
                         "use with --results")
    ap.add_argument("--train", type=json.loads, default=None,
                    help="overrides of the params' train section (JSON), e.g. '{\"epochs\": 20}' (baselines and "
                         "screens; finals keep final.train); use with --results")
    ap.add_argument("--results", default=results, help=f"bench/results/<name>.{{md,json}} (default: {results})")


def check_variant(args: argparse.Namespace, results: str) -> None:
    """A variant never overwrites the shipped configuration's results file."""
    if is_variant(args) and args.results == results:
        raise SystemExit(f"--avil, --target-task and --train make a variant: give it its own --results name (not {results})")


def is_variant(args: argparse.Namespace) -> bool:
    return bool(args.avil or args.target_task or args.train)


def apply_variant(params: dict, args: argparse.Namespace) -> dict:
    """`params` with the variant's overrides (a copy; the shipped params when there are none)."""
    out = copy.deepcopy(params)
    if args.avil:
        out["avil"] = {**(out.get("avil") or {}), **args.avil}
    if args.target_task:
        out["tasks"][out["target"]] = {**out["tasks"][out["target"]], **args.target_task}
    if args.train:
        out["train"] = {**out["train"], **args.train}
    return out


def variant_command(args: argparse.Namespace, results: str) -> str:
    """The arguments that name a variant in a results file's command line ('' for the shipped one)."""
    if not is_variant(args) and args.results == results:
        return ""
    return ((f" --avil '{json.dumps(args.avil)}'" if args.avil else "")
            + (f" --target-task '{json.dumps(args.target_task)}'" if args.target_task else "")
            + (f" --train '{json.dumps(args.train)}'" if args.train else "")
            + f" --results {args.results}")


def add_pair_args(ap: argparse.ArgumentParser) -> None:
    """The four pool/target pairs of bench_ranking and how their text pairs run."""
    from bench_ranking import PAIRS

    ap.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    ap.add_argument("--frozen-encoder", action="store_true", help="text pairs in the frozen-encoder screening mode")
    ap.add_argument("--text-epochs", type=int, default=6)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--reuse", nargs="*", default=[], metavar="PAIR=PROJECT",
                    help="a finished project of the pair's params instead of a fresh one")


def reuse_map(args: argparse.Namespace) -> dict[str, Path]:
    return {k: Path(v) for k, v in (r.split("=", 1) for r in args.reuse)}
