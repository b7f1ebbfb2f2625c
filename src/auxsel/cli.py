"""`auxsel check [PARAMS]`: a pool looked at before hours of training.

Validates the params file, loads and prepares every task of the pool in memory through the same
checks the prepare stage runs (nothing is written), and prints one table - rows per split, classes
and their balance, input shape or token lengths - with warnings (a class missing from a split, a
candidate 10x smaller than the target, texts cut at max_length) and errors (a task that does not
prepare, a candidate holding examples of the target's dev or test split). Exit 2 when there is an
error. Run it in the project folder (paths default to the params file's folder).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from auxsel.errors import AuxselError


def _resolve(name_or_path: str, raw: Path) -> str:
    return str(raw / name_or_path.split(":", 1)[1]) if name_or_path.startswith("builtin:") else name_or_path


def _tokenizer(params: dict[str, Any], raw: Path):
    model = params["model"]
    if model["kind"] != "hf":
        return None
    from transformers import AutoTokenizer

    from auxsel.models.text import one_line

    try:
        return AutoTokenizer.from_pretrained(_resolve(model["name_or_path"], raw))
    except (OSError, ValueError) as exc:
        raise AuxselError(f"model.name_or_path: cannot load the tokenizer of {model['name_or_path']!r}: {one_line(exc)}") from exc


def check(params_path: Path, schema: Path, raw: Path, out=sys.stdout) -> int:
    from auxsel import archives, params as params_mod
    from auxsel.tasks import pool, prepare, sources

    params = params_mod.load(params_path, schema)
    missing = [a for a in sorted(params_mod.required_archives(params)) if not (raw / a / archives.COMPLETE).is_file()]
    if missing:
        raise AuxselError(f"{raw / missing[0]}: not fetched; run `python -m stages.fetch --archive {missing[0]}` "
                          f"(or `snakemake --cores 1 {raw / missing[0]}`) first")
    tokenizer = _tokenizer(params, raw)
    target, candidates = params["target"], params["candidates"]
    roles = {target: "target", **{c: "candidate" for c in candidates}}
    errors, prepared = [], {}
    for task in roles:
        spec = params["tasks"][task]
        try:
            tables = sources.load_task_table(task, spec, raw, params["prepare"]["seed"])
            prepared[task] = prepare.prepare_task(task, spec, tables, params["prepare"]["seed"], tokenizer,
                                                  params["model"]["max_length"])
        except AuxselError as exc:
            errors.append(str(exc))
    summaries = {t: pool.summary(t, p.meta, p.tables) for t, p in prepared.items()}
    warnings = [w for s in summaries.values() for w in s["warnings"]]
    if target in prepared:
        warnings += pool.pool_warnings(target, summaries)
        shapes = {t: p.meta["input_shape"] for t, p in prepared.items() if p.meta["kind"] == "image"}
        if target in shapes and pool.shape_mismatch(target, shapes):
            errors.append(pool.shape_mismatch(target, shapes))
        for cand in candidates:
            if cand in prepared:
                errors += pool.leaks(target, prepared[target].tables, params["tasks"][target]["inputs"], cand,
                                     prepared[cand].tables["train"], params["tasks"][cand]["inputs"])
    print(f"{params_path}: target {target}, {len(candidates)} candidates, seeds {params['seeds']}", file=out)
    if summaries:
        print(pool.table(list(summaries.values()), roles), file=out)
    for w in warnings:
        print(f"warning: {w}", file=out)
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    print("ok" if not errors else f"{len(errors)} error(s)", file=out)
    return 2 if errors else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="auxsel", description="reproducible auxiliary-task selection")
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="check a pool (params, data, leaks) before training", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("params", nargs="?", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)")
    c.add_argument("--schema", type=Path, help="default: the project's workflow/schemas/params.schema.yaml")
    c.add_argument("--raw", type=Path, help="fetched archives (default: the project's data/raw)")
    args = ap.parse_args(argv)
    # the project: this folder, or the params file's nearest folder that holds the workflow
    # (a pool file under configs/ is checked from the project root, where its paths start)
    base = next((d for d in (Path.cwd(), *args.params.resolve().parents)
                 if (d / "workflow/schemas/params.schema.yaml").is_file()), args.params.resolve().parent)
    try:
        return check(args.params, args.schema or base / "workflow/schemas/params.schema.yaml", args.raw or base / "data/raw")
    except AuxselError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
