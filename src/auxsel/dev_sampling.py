"""The part of a gain's uncertainty that more seeds cannot remove: the dev examples themselves.

Every seed judges its gains on a random half of one fixed dev split (train.dev_holdout). Halves of
different seeds share about half their examples, so an example the candidate happens to get right
and the reference wrong counts in several seeds' gains at once: the seeds' gains are positively
correlated through the examples. The seed-to-seed variance that the t test reads cannot see this:
E[s²] = (mean variance − mean covariance) of one seed's gain, so s²/n misses the mean covariance
between two seeds' gains, C̄, which does not shrink with more seeds (measured per pair in
bench/README.md §8: from 0.001 on the default vision pool to 0.007 on the frozen sentiment pool).

C̄ is estimated by the bootstrap over dev examples (Efron & Tibshirani 1993): each replicate
weights every dev example by a Poisson(1) draw, the same weights for every seed and run (the
examples are shared; the models are fixed), recomputes each seed's gain on its own holdout with
those weights, and the covariance of two seeds' replicate gains is the shared part. The selection
reports √C̄ and, with select.dev_variance, adds C̄ to the squared standard error of the mean gain
(auxsel.select.gain_stats).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from auxsel.errors import AuxselError

REPLICATES = 2000


def example_weights(n_dev: int, seed: int, replicates: int = REPLICATES) -> np.ndarray:
    """(replicates, n_dev) Poisson(1) weights, one row per bootstrap replicate of the dev split."""
    return np.random.default_rng(seed).poisson(1.0, size=(replicates, n_dev)).astype(np.float64)


def weighted_metric(kind: str, weights: np.ndarray, labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """The metric of `preds` against `labels` under each row of `weights` (replicates × examples):
    accuracy, or macro-F1 over the classes present (weighted support > 0), as metric_value computes
    them unweighted."""
    labels, preds = np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)
    if kind == "accuracy":
        total = weights.sum(1)
        return np.divide(weights @ (preds == labels).astype(np.float64), total, out=np.full(len(weights), np.nan),
                         where=total > 0)
    k = num_classes
    onehot = np.zeros((len(labels), k * k))
    onehot[np.arange(len(labels)), labels * k + preds] = 1.0
    cm = (weights @ onehot).reshape(len(weights), k, k)
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support = cm.sum(2) + cm.sum(1)
    present = support > 0
    f1 = np.where(present, 2 * tp / np.maximum(support, 1e-300), 0.0)
    return f1.sum(1) / np.maximum(present.sum(1), 1)


def replicate_gains(runs: dict[Any, dict[str, np.ndarray]], reference: dict[Any, dict[str, np.ndarray]],
                    weights: np.ndarray, kind: str, num_classes: int, where: str = "") -> np.ndarray:
    """(replicates, seeds) bootstrap replicates of each seed's gain, `runs` minus `reference`, in
    sorted seed order over the seeds both have. A run is its holdout answers {"row", "label",
    "pred"} (auxsel.runs.read_holdout); a run and its reference must have judged the same rows."""
    seeds = sorted(set(runs) & set(reference))
    out = np.empty((len(weights), len(seeds)))
    for j, s in enumerate(seeds):
        a, b = runs[s], reference[s]
        if not (np.array_equal(a["row"], b["row"]) and np.array_equal(a["label"], b["label"])):
            raise AuxselError(f"{where} seed {s}: the run and its reference were judged on different holdout examples; "
                              f"rerun them with the same train.dev_holdout")
        if len(a["row"]) and a["row"].max() >= weights.shape[1]:
            raise AuxselError(f"{where} seed {s}: holdout row {a['row'].max()} is beyond the {weights.shape[1]}-example "
                              f"dev split")
        w = weights[:, a["row"]]
        out[:, j] = (weighted_metric(kind, w, a["label"], a["pred"], num_classes)
                     - weighted_metric(kind, w, b["label"], b["pred"], num_classes))
    return out


def seed_covariance(replicates: np.ndarray) -> np.ndarray:
    """(seeds, seeds) covariance of the seeds' gains over the dev examples' sampling."""
    if replicates.shape[1] < 1:
        return np.zeros((0, 0))
    return np.atleast_2d(np.cov(replicates, rowvar=False))


def gain_covariance(answers: dict[str, dict[Any, dict[str, np.ndarray]]], name: str, reference: str,
                    weights: np.ndarray, kind: str, num_classes: int) -> np.ndarray:
    """(seeds, seeds) dev-example covariance of run `name`'s gains over run `reference`, from
    `answers` (run name -> seed -> holdout answers)."""
    return seed_covariance(replicate_gains(answers[name], answers[reference], weights, kind, num_classes,
                                           where=f"{name} vs {reference},"))


def shared_variance(cov: np.ndarray, idx: list[int] | None = None) -> float:
    """C̄: the mean covariance between two different seeds' gains (over the seeds `idx`, default
    all), clipped at 0 - the term the seed-to-seed variance leaves out of the mean gain's variance."""
    sub = cov if idx is None else cov[np.ix_(idx, idx)]
    s = sub.shape[0]
    if s < 2:
        return 0.0
    return max(float((sub.sum() - np.trace(sub)) / (s * (s - 1))), 0.0)
