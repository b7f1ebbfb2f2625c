"""Atomic artifact writing and provenance.

A stage writes into a hidden temp directory beside its output and renames it into place only
when everything is written, so a killed stage never leaves a directory that looks complete; the
next run simply starts over (or resumes from its own checkpoints).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
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

from auxsel.errors import AuxselError

PACKAGES = ("auxsel", "torch", "transformers", "datasets", "pyarrow", "numpy", "safetensors", "snakemake", "dvc")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        pass
    return True


def clear_stale(final: Path) -> list[Path]:
    """Remove the hidden `.NAME.tmp-HOST-PID*` / `.NAME.old-HOST-PID*` siblings of `final` left by
    a job of this host that was killed (SIGKILL skips every cleanup) and is no longer running.

    Leftovers never look like an output, but they pile up; ones from another host or a live
    process are left alone, since their owner may still be writing them."""
    final = Path(final)
    host = socket.gethostname()
    removed = []
    for kind in ("tmp", "old"):
        prefix = f".{final.name}.{kind}-{host}-"
        for path in final.parent.glob(prefix + "*"):
            pid = path.name.removeprefix(prefix).split("-", 1)[0]
            if pid.isdigit() and not pid_alive(int(pid)):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def _sibling(path: Path, kind: str) -> Path:
    """The hidden `.NAME.KIND-HOST-PID` beside `path`: the owner is in the name for `clear_stale`."""
    return path.with_name(f".{path.name}.{kind}-{socket.gethostname()}-{os.getpid()}")


MANIFEST = "manifest.json"


class DamagedArtifact(AuxselError):
    """An artifact is not what its writer wrote (truncated, corrupted, edited, partly deleted)."""

    def __init__(self, path: Path, problem: str, command: str | None):
        self.path, self.problem, self.command = Path(path), problem, command
        super().__init__(f"{path}: {problem}")


def write_manifest(folder: Path, command: str | None) -> None:
    """sha256 and size of every file in `folder`, and the command that writes it: what a reader
    checks before it trusts the folder (verify_dir)."""
    folder = Path(folder)
    files = {str(f.relative_to(folder)): {"sha256": file_sha256(f), "bytes": f.stat().st_size}
             for f in sorted(folder.rglob("*")) if f.is_file() and f.name != MANIFEST}
    write_json({"files": files, "command": command}, folder / MANIFEST)


def verify_dir(folder: Path) -> None:
    """Raise DamagedArtifact naming the first file that is missing, of the wrong size or of the
    wrong sha256, or the manifest itself when it is missing or unreadable."""
    folder = Path(folder)
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
        files, command = manifest["files"], manifest.get("command")
        entries = [(name, int(e["bytes"]), str(e["sha256"])) for name, e in files.items()]
    except FileNotFoundError:
        raise DamagedArtifact(path, "missing (written by hand, by an older auxsel, or partly deleted)", None) from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DamagedArtifact(path, f"unreadable ({type(exc).__name__})", None) from None
    for name, size, digest in entries:
        f = folder / name
        if not f.is_file():
            raise DamagedArtifact(f, "missing", command)
        if f.stat().st_size != size:
            raise DamagedArtifact(f, f"{f.stat().st_size} bytes, but {size} were written (truncated or changed since)", command)
        if file_sha256(f) != digest:
            raise DamagedArtifact(f, "sha256 is not what was written (corrupted or changed since)", command)


@contextlib.contextmanager
def atomic_dir(final: Path, command: str | None = None) -> Iterator[Path]:
    """Yield a temp dir; on success it replaces `final` in one rename, on failure it vanishes.
    With `command` (what rebuilds it), a manifest of the folder's files is written last."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    clear_stale(final)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=_sibling(final, "tmp").name + "-"))
    try:
        yield tmp
        if command is not None:
            write_manifest(tmp, command)
        if final.exists():
            old = _sibling(final, "old")
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
    clear_stale(path)
    tmp = _sibling(path, "tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)


def finite_json(obj: Any) -> Any:
    """NaN and ±inf (e.g. one seed: no spread, no interval) as null: JSON has no such numbers, and a
    bare `Infinity` breaks DVC, browsers and every strict parser."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def write_json(obj: Any, path: Path) -> None:
    """Strict JSON (non-finite numbers as null) with sorted keys, written to a temp file and
    renamed (atomic on one filesystem)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clear_stale(path)
    tmp = _sibling(path, "tmp")
    tmp.write_text(json.dumps(finite_json(obj), indent=2, sort_keys=True, default=str, allow_nan=False) + "\n")
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


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(("model name", "Hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "CUDA_VISIBLE_DEVICES",
            "CUBLAS_WORKSPACE_CONFIG", "PYTHONHASHSEED", "SLURM_JOB_ID")


def environment() -> dict[str, Any]:
    """What can make two machines give different numbers for the same code and params: CPU,
    cores, threads, the BLAS/OpenMP build, CUDA/cuDNN and GPU, and the variables that steer them.
    Torch details only when the stage has imported torch (training stages always do)."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    env: dict[str, Any] = {
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "python_implementation": platform.python_implementation(),
        "libc": " ".join(platform.libc_ver()).strip() or None,
        "env": {k: os.environ[k] for k in ENV_VARS if k in os.environ},
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        cuda = torch.cuda.is_available()
        env["torch"] = {
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "num_threads": torch.get_num_threads(),
            "num_interop_threads": torch.get_num_interop_threads(),
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "mkl": torch.backends.mkl.is_available(),
            "mkldnn": torch.backends.mkldnn.is_available(),
            "openmp": torch.backends.openmp.is_available(),
            "cuda_build": torch.version.cuda,
            "cuda_available": cuda,
            "cudnn": torch.backends.cudnn.version() if cuda and torch.backends.cudnn.is_available() else None,
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
            "gpu_capability": [list(torch.cuda.get_device_capability(i)) for i in range(torch.cuda.device_count())] if cuda else [],
            "driver": _nvidia_driver() if cuda else None,
        }
    return env


def _nvidia_driver() -> str | None:
    try:
        with open("/proc/driver/nvidia/version", encoding="utf-8") as fh:
            return fh.readline().strip() or None
    except OSError:
        return None


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
            "environment": environment(),
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
