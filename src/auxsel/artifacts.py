"""Atomic artifact writing and provenance.

A stage writes into a hidden temp directory beside its output and renames it into place only
when everything is written, so a killed stage never leaves a directory that looks complete; the
next run simply starts over (or resumes from its own checkpoints).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

PACKAGES = ("auxsel", "torch", "transformers", "datasets", "pyarrow", "numpy", "safetensors", "snakemake", "dvc")


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temp dir; on success it replaces `final` in one rename, on failure it vanishes."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-"))
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_parquet(table: pa.Table, path: Path) -> None:
    """Parquet written to a temp file and renamed, so a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)


def write_json(obj: Any, path: Path) -> None:
    """JSON with sorted keys, written to a temp file and renamed (atomic on one filesystem)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(path)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def params_hash(params: Any) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _git() -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}
    if commit.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


class Provenance:
    """Collects what is needed to tell two runs (and two environments) apart."""

    def __init__(self, stage: str, params_slice: Any, inputs: list[Path] | None = None, device: str = "cpu"):
        self.record: dict[str, Any] = {
            "stage": stage,
            "params": params_slice,
            "params_hash": params_hash(params_slice),
            "git": _git(),
            "packages": _versions(),
            "device": device,
            "host": socket.gethostname(),
            "platform": platform.platform(),
            "argv": sys.argv,
            "inputs": {str(p): _hash_input(Path(p)) for p in inputs or []},
            "start": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        self._t0 = time.perf_counter()

    def write(self, directory: Path, filename: str = "provenance.json", **extra: Any) -> None:
        self.record.update(extra)
        self.record["end"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.record["wall_seconds"] = round(time.perf_counter() - self._t0, 3)
        write_json(self.record, Path(directory) / filename)


def _hash_input(path: Path) -> str | None:
    if path.is_file():
        return file_sha256(path)
    if path.is_dir():
        meta = path / "meta.json"
        if meta.is_file():
            return json.loads(meta.read_text()).get("content_hash")
        done = path / ".complete"
        return done.read_text().strip() if done.is_file() else None
    return None
