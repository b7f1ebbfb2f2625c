"""The weighting methods behind one interface: `run_method(name, ...)`.

    single        the target alone
    uniform       target + auxiliaries, every loss weight 1, batches interleaved by a seeded sampler
    fixed         as uniform with given weights (e.g. the selection's)
    diw           weights learned by the meta-gradient of the target dev loss through a one-step
                  look-ahead (our reading of the paper's baseline; see auxsel.methods.diw)
    avil_literal  αVIL as far as the paper's text can be recovered
    avil          the αVIL formulation that passes the controls (the default)

Config: `TrainConfig` (params `train`), `AvilConfig` (params `avil` / `avil_literal`), `DiwConfig`
(params `diw`). `method_options(name, section)` turns a params section into the right object.
"""

from __future__ import annotations

import os
from typing import Any

from auxsel.errors import AuxselError
from auxsel.methods.avil import AvilConfig, Avil
from auxsel.methods.diw import Diw, DiwConfig
from auxsel.methods.simple import Interleaved
from auxsel.tasks.tensors import TaskData
from auxsel.train import TrainConfig, TrainResult, fit

METHODS = ("single", "uniform", "fixed", "diw", "avil_literal", "avil")

__all__ = ["METHODS", "run_method", "method_options", "AvilConfig", "DiwConfig", "TrainConfig", "TrainResult"]


def method_options(method: str, section: dict[str, Any] | None = None):
    """The options object for `method` from its params section (None for methods without options)."""
    if method in ("avil", "avil_literal"):
        return AvilConfig.preset(method, section)
    if method == "diw":
        return DiwConfig.from_dict(section)
    if method in ("single", "uniform", "fixed"):
        if section:
            raise AuxselError(f"{method}: takes no options (got {sorted(section)})")
        return None
    raise AuxselError(f"unknown method {method!r} (one of {', '.join(METHODS)})")


def run_method(
    method: str,
    model,
    tasks: dict[str, TaskData],
    target: str,
    *,
    seed: int,
    train: TrainConfig | dict[str, Any] | None = None,
    options: AvilConfig | DiwConfig | dict[str, Any] | None = None,
    weights: dict[str, float] | None = None,
    checkpoint: str | os.PathLike | None = None,
    eval_seed: int | None = None,
    data_seed: int | None = None,
) -> TrainResult:
    """Train `model` on `target` (+ the other entries of `tasks`) with `method`; return a TrainResult.

    Args:
        method: one of METHODS.
        model: a MultiTaskModel with a head for every task (auxsel.models.build_model).
        tasks: {name: TaskData}; must contain `target`. `single` ignores the others.
        target: the target task; only its dev split chooses anything, its test split is only reported.
        seed: seeds the samplers and torch (the model's init is seeded by build_model).
        train: TrainConfig or its params dict.
        options: AvilConfig / DiwConfig or their params dict (see `method_options`).
        weights: `fixed`: the loss weight of every auxiliary (target defaults to 1; a missing
            auxiliary is an error). `avil*` / `diw`: starting weights (default 1 each), e.g. the
            selection's weights in the final stage.
        checkpoint: where the per-epoch checkpoint goes when `train.resume` is set (the caller
            chooses the path and deletes the file when done; see `auxsel.train.fit`).
        eval_seed: seeds the draws from the target's dev split (αVIL's fit batch, DIW's dev
            batches); default `seed`. Runs that must be compared (the pairwise screens of one seed)
            get the same eval_seed, so they are judged on the same dev examples.
        data_seed: seeds each task's training-batch stream (with the task's name; default
            `seed`). Runs that must be paired (a seed's baseline and its screens) get the same
            data_seed, so the target's sequence of training batches is the same in all of them
            and a gain is the candidate's effect, not data-order noise.
    """
    if method not in METHODS:
        raise AuxselError(f"unknown method {method!r} (one of {', '.join(METHODS)})")
    cfg = train if isinstance(train, TrainConfig) else TrainConfig.from_dict(train)
    opts = options if isinstance(options, (AvilConfig, DiwConfig)) else method_options(method, options)
    wanted = AvilConfig if method.startswith("avil") else DiwConfig if method == "diw" else type(None)
    if not isinstance(opts, wanted):
        raise AuxselError(f"{method}: options must be {wanted.__name__} or its params dict, not {type(opts).__name__}")
    if target not in tasks:
        raise AuxselError(f"target task {target!r} is not among the tasks {sorted(tasks)}")
    names = [target] if method == "single" else [target] + [t for t in tasks if t != target]
    given = dict(weights or {})
    unknown = sorted(set(given) - set(names))
    if unknown and method != "single":
        raise AuxselError(f"{method}: weights given for task(s) {unknown} that are not in the run")
    if method == "fixed":
        missing = [t for t in names[1:] if t not in given]
        if missing:
            raise AuxselError(f"fixed: no weight given for auxiliary task(s) {missing}")
    w = {t: float(given.get(t, 1.0)) for t in names}
    if method == "single":
        w = {target: 1.0}
    bad = {t: v for t, v in w.items() if not v >= 0}
    if bad:
        raise AuxselError(f"{method}: weights must be finite and >= 0 (got {bad})")
    if method in ("single", "uniform", "fixed"):
        if method == "uniform":
            w = {t: 1.0 for t in names}
        plan: Any = Interleaved(w)
    elif method == "diw":
        plan = Diw(opts, w)
    else:
        plan = Avil(opts, w)
    run_tasks = {t: tasks[t] for t in names}
    identity = {"options": opts.to_dict() if opts is not None else {}, "initial_weights": w}
    result = fit(model, run_tasks, target, plan, cfg, seed, method=method, checkpoint=checkpoint, identity=identity,
                 eval_seed=eval_seed, data_seed=data_seed)
    result.config = {"method": method, "train": cfg.to_dict(), **identity}
    return result
