"""What every stage shares: argument parsing, params loading, the one-line error exit.

The file layout lives here and in the workflow files, never in the library.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from auxsel import params as params_mod
from auxsel.errors import AuxselError

SCHEMA = Path("workflow/schemas/params.schema.yaml")
RAW = Path("data/raw")
PREPARED = Path("data/prepared")
RESULTS = Path("results")


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)")
    return p


def load_params(path: Path) -> dict[str, Any]:
    return params_mod.load(path, SCHEMA)


def resolve_model_path(name_or_path: str) -> str:
    """`builtin:<archive>` names a fetched archive folder; anything else goes to Hugging Face as is."""
    if name_or_path.startswith("builtin:"):
        return str(RAW / name_or_path.split(":", 1)[1])
    return name_or_path


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)
    os.environ.setdefault("OMP_NUM_THREADS", str(n))


def run(main: Callable[[], None]) -> None:
    """Run a stage; user errors become one line on stderr and exit code 2."""
    try:
        main()
    except AuxselError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
