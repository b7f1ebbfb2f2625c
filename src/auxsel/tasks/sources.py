"""Raw task tables from the three sources: builtin pools, local files, the Hugging Face hub.

`files` and `hf` go through the same `datasets.load_dataset` call, so the hub path is exercised
by tests on local files even on machines without network.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa

from auxsel.errors import AuxselError
from auxsel.params import local_files
from auxsel.seeding import derive_seed
from auxsel.tasks import builtin

SPLITS = ("train", "dev", "test")
_FORMAT_OF = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".json": "json", ".jsonl": "json"}


def _format(spec: dict[str, Any], files: list[str], task: str) -> str:
    if "format" in spec:
        return spec["format"]
    kinds = {_FORMAT_OF.get(Path(f).suffix.lower()) for f in files}
    if len(kinds) != 1 or None in kinds:
        raise AuxselError(f"task {task}: cannot infer the format of {files}; set tasks.{task}.format")
    return kinds.pop()


def _load(path: str, name: str | None, data_files: Any, task: str, cache_dir: Path | None) -> dict[str, pa.Table]:
    """`datasets.load_dataset` → {split: arrow table}; `validation` is read as `dev`."""
    if not sys.stderr.isatty():  # progress bars only for people watching
        datasets.disable_progress_bars()
    verbosity = datasets.utils.logging.get_verbosity()
    datasets.utils.logging.set_verbosity(datasets.utils.logging.CRITICAL)  # its error lines would precede ours
    try:
        loaded = datasets.load_dataset(path, name, data_files=data_files, cache_dir=str(cache_dir) if cache_dir else None)
    except FileNotFoundError as exc:
        raise AuxselError(f"task {task}: data file not found ({exc})") from exc
    except Exception as exc:  # datasets raises many types for unreadable files; name the task
        if "corresponds to no data" in str(exc):  # e.g. a CSV with a header and no rows
            raise AuxselError(f"tasks.{task}.data_files: {data_files or path} hold no rows") from exc
        raise AuxselError(f"task {task}: could not load {data_files or path}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    finally:
        datasets.utils.logging.set_verbosity(verbosity)
    out = {}
    for split, ds in loaded.items():
        key = "dev" if split == "validation" else split
        if key not in SPLITS:
            raise AuxselError(f"task {task}: unexpected split {split!r} (use train, dev/validation, test)")
        out[key] = ds.data.table.combine_chunks() if hasattr(ds.data, "table") else ds.data
    return out


def load_task_table(task: str, spec: dict[str, Any], raw_root: Path, seed: int, cache_dir: Path | None = None) -> dict[str, pa.Table]:
    """The task's rows before splitting: {"all": table} or some of {"train", "dev", "test"}."""
    if spec["source"] == "builtin":
        root = raw_root / builtin.ARCHIVE_OF[spec["dataset"]]
        build_seed = derive_seed(seed, "build", task)
        return {"all": builtin.build(spec["dataset"], root, spec.get("options", {}), build_seed)}
    data_files = spec.get("data_files")
    if spec["source"] == "files":
        files = local_files(spec)
        for f in files:
            if Path(f).is_dir():
                raise AuxselError(f"tasks.{task}.data_files: {f} is a folder; name the file(s) in it")
            if not Path(f).is_file():
                raise AuxselError(f"tasks.{task}.data_files: {f} does not exist")
            if Path(f).stat().st_size == 0:
                raise AuxselError(f"task {task}: data file {f} is empty")
        fmt = _format(spec, files, task)
        if isinstance(data_files, dict):
            data_files = {("validation" if k == "dev" else k): v for k, v in data_files.items()}
        tables = _load(fmt, None, data_files, task, cache_dir)
    else:
        tables = _load(spec["dataset"], spec.get("config"), data_files, task, cache_dir)
    if set(tables) == {"train"} and not isinstance(spec.get("data_files"), dict):
        return {"all": tables["train"]}
    return tables
