"""Prepare one task: data/prepared/<task>/{train,dev,test}.parquet + meta.json + provenance.json."""

from __future__ import annotations

import shutil
from pathlib import Path

from auxsel import artifacts
from auxsel.errors import AuxselError
from auxsel.tasks import builtin, prepare, sources
from stages import _common


def main() -> None:
    args, params = _common.task_stage(__doc__)
    spec = params["tasks"][args.task]
    seed = params["prepare"]["seed"]
    model = params["model"]
    out = _common.PREPARED / args.task
    inputs = [_common.RAW / builtin.ARCHIVE_OF[spec["dataset"]]] if spec["source"] == "builtin" else []
    prov = artifacts.Provenance("prepare", {"task": spec, "prepare": params["prepare"], "model": model}, inputs)
    tokenizer = None
    if model["kind"] == "hf":
        from transformers import AutoTokenizer

        from auxsel.models.text import one_line

        try:
            tokenizer = AutoTokenizer.from_pretrained(_common.resolve_model_path(model["name_or_path"]))
        except (OSError, ValueError) as exc:
            raise AuxselError(f"model.name_or_path: cannot load the tokenizer of {model['name_or_path']!r}: {one_line(exc)}") from exc
    with artifacts.atomic_dir(out, command=_common.job_command()) as tmp:
        # a per-job datasets cache: two prepare jobs never share temp files
        raw = sources.load_task_table(args.task, spec, _common.RAW, seed, cache_dir=Path(tmp) / ".hf-cache")
        result = prepare.prepare_task(args.task, spec, raw, seed, tokenizer, model["max_length"])
        shutil.rmtree(Path(tmp) / ".hf-cache", ignore_errors=True)
        for split, table in result.tables.items():
            artifacts.write_parquet(table, Path(tmp) / f"{split}.parquet")
        result.meta["content_hash"] = prepare.content_hash(result.tables)
        artifacts.write_json(result.meta, Path(tmp) / "meta.json")
        prov.write(tmp, outputs={s: artifacts.file_sha256(Path(tmp) / f"{s}.parquet") for s in result.tables})
    counts = ", ".join(f"{k} {v}" for k, v in result.meta["counts"].items())
    print(f"{args.task}: {counts} -> {out}")


if __name__ == "__main__":
    _common.run(main)
