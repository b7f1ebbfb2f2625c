"""Small real-data problems for the model / training / method tests (real MNIST, few hundred canvases).

MNIST is read from $AUXSEL_MNIST_PKL (conftest points it at the fetched archive), else
data/raw/mnist/mnist.pkl.gz under the repository.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from auxsel.tasks.mnist import load_mnist, multimnist
from auxsel.tasks.tensors import TaskData

ROOT = Path(__file__).resolve().parents[1]

# tiny models: one intra-op thread is fastest and avoids oversubscribing a shared 2-core machine
torch.set_num_threads(1)


def mnist_path() -> Path | None:
    cands = [os.environ.get("AUXSEL_MNIST_PKL"), ROOT / "data/raw/mnist/mnist.pkl.gz"]
    for c in cands:
        if c and Path(c).is_file():
            return Path(c)
    return None


@functools.lru_cache(maxsize=1)
def _mnist():
    path = mnist_path()
    if path is None:
        pytest.fail("MNIST pickle not found: conftest fetches it and sets AUXSEL_MNIST_PKL")
    return load_mnist(path)


def _canvases(image_range: str, n: int, seed: int, shift: int = 4, key: str = "left") -> dict[str, torch.Tensor]:
    imgs, labs = _mnist()
    d = multimnist(imgs, labs, image_range, n, seed, shift=shift)
    return {"image": torch.from_numpy(d["image"]), "label": torch.from_numpy(d[key]).long()}


@functools.lru_cache(maxsize=4)
def small_pool(n_train: int = 300, n_dev: int = 300, n_more: int = 1500, n_aux: int = 600) -> dict[str, TaskData]:
    """Target `left` (left digit), `left_more` (positive control: the same task from a shifted
    source, shift 6, disjoint images), `right` (right digit), `shuffled` (left digit, labels
    permuted per example, fresh images)."""
    left = TaskData("left", 10, splits={
        "train": _canvases("60000:62000", n_train, 1),
        "dev": _canvases("62000:64000", n_dev, 2),
        "test": _canvases("64000:70000", 500, 3),
    })
    more = TaskData("left_more", 10, splits={"train": _canvases("0:20000", n_more, 4, shift=6)})
    right = TaskData("right", 10, splits={"train": _canvases("20000:30000", n_aux, 5, key="right")})
    sh = _canvases("40000:50000", n_aux, 7)
    sh["label"] = torch.from_numpy(np.random.default_rng(8).permutation(sh["label"].numpy()))
    shuffled = TaskData("shuffled", 10, splits={"train": sh})
    return {t.name: t for t in (left, more, right, shuffled)}


FAST = dict(epochs=2, batch_size=16, lr=0.03, momentum=0.9)


def target_tasks(*names: str) -> dict[str, TaskData]:
    """`left` plus the named tasks of the small pool."""
    pool = small_pool()
    return {n: pool[n] for n in ("left",) + names}


def lenet(tasks, seed: int = 0, dtype=torch.float32):
    from auxsel.models import build_model

    return build_model({"kind": "lenet"}, {t: 10 for t in tasks}, seed=seed).to(dtype)
