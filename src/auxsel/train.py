"""The one training loop shared by every method.

`fit()` owns everything that is the same for all methods: seeding, device placement, the seeded
per-task samplers, the optimiser step (with the NaN/inf check), per-epoch target-dev evaluation,
history rows, the progress bar, best-checkpoint selection and early stopping on the target's
**dev** metric. A method supplies only what happens inside an epoch (an `EpochPlan`), built from
the same primitives (`Run.step`, `Run.interleaved`, `Run.batches`).

With `train.resume`, `fit()` also writes a checkpoint after every epoch to a path the caller gives
and, when a checkpoint of the same run is there, continues from it: the model, every optimiser,
sampler and RNG state, the method's weights and the history so far, so the result is identical to
an uninterrupted run. Where that path is, is the caller's business.

Nothing here knows about Snakemake or DVC, or where files go.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Protocol

import torch
from torch.nn import functional as F

from auxsel.errors import AuxselError
from auxsel.seeding import derive_seed
from auxsel.tasks.tensors import TaskData


@dataclass
class TrainConfig:
    """Settings shared by every method (params.yaml: the `train` section; keys map 1:1).

    Attributes:
        epochs: number of epochs (default 10). For multi-task methods an epoch draws
            `examples_per_task` examples from every task.
        batch_size: examples per optimiser step (default 32).
        optimizer: "sgd" (default) or "adamw".
        lr: learning rate (default 0.02).
        momentum: SGD momentum (default 0.9; ignored by adamw).
        weight_decay: (default 0.0).
        examples_per_task: examples drawn from each task per epoch; None (default) = the target's
            training-set size, so one epoch is one pass over the target. Each task's sampler keeps
            a seeded permutation across epochs, so a large auxiliary set is walked through in order.
        patience: stop after this many epochs without a better target dev metric; None (default)
            = run all epochs. The best-dev-metric epoch's weights are always the ones returned.
        eval_batch_size: batch size for evaluation (default 256).
        device: "cpu" (default), "cuda", or "cuda:N". Asking for cuda without one is an error.
        amp: bfloat16 autocast (default False). On CUDA, and on CPUs with native bf16 matmuls
            (AVX-512-BF16, AMX: 2.7x a float32 linear layer on the 2-core test machine); on other
            CPUs bf16 is emulated and slower. Changes the numbers (bf16 rounding), so it is off by default.
        grad_clip: clip the gradient norm of each step to this value; None (default) = no clipping.
        progress: show a tqdm bar per epoch; None (default) = only when stderr is a TTY.
        dev_holdout: the fraction of the target's dev split set aside, by a draw fixed by the
            run's eval seed, as the "holdout" split: training, αVIL's/DIW's fits and the choice of
            the best epoch see only the rest ("dev"); the holdout is evaluated once, at the best
            epoch, so a selection that reads it is not judged on the examples that chose the
            model (default 0.0: off).
        resume: write a checkpoint after every epoch (to the path the caller passes to `fit` /
            `run_method`) and continue from it when it belongs to the same run; the result is
            identical to an uninterrupted run's (default False).
        trace: also evaluate the target's holdout and test splits after every epoch and add them to
            the history (split "holdout"/"test" rows). Why: how long a screen should train can
            then be studied from one long run per seed (bench/screen_length.py) — the first L
            epochs of a run are an L-epoch run, since nothing else reads `epochs`. Nothing that
            chooses or decides reads these rows; they cost one evaluation pass per split per epoch
            and leave the run's numbers unchanged (default False).
    """

    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 0.0
    examples_per_task: int | None = None
    patience: int | None = None
    eval_batch_size: int = 256
    device: str = "cpu"
    amp: bool = False
    grad_clip: float | None = None
    progress: bool | None = None
    resume: bool = False
    dev_holdout: float = 0.0
    trace: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "TrainConfig":
        return _from_dict(cls, d, "train")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise AuxselError("train: epochs, batch_size and eval_batch_size must be >= 1")
        if self.optimizer not in ("sgd", "adamw"):
            raise AuxselError(f"train.optimizer: {self.optimizer!r} is not one of sgd, adamw")
        if not self.lr > 0:
            raise AuxselError(f"train.lr must be > 0 (got {self.lr})")
        if self.examples_per_task is not None and self.examples_per_task < 1:
            raise AuxselError("train.examples_per_task must be >= 1 or null")
        if not 0 <= self.dev_holdout < 1:
            raise AuxselError(f"train.dev_holdout must be in [0, 1) (got {self.dev_holdout})")


def _from_dict(cls, d: dict[str, Any] | None, section: str):
    d = dict(d or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise AuxselError(f"{section}: unknown key(s) {unknown}; known: {sorted(known)}")
    return cls(**d)


# ----------------------------------------------------------------------------------------------
# metrics and evaluation


def metric_value(kind: str, preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """accuracy, or macro-F1 over the classes present in labels or predictions."""
    if len(labels) == 0:
        return float("nan")
    if kind == "accuracy":
        return float((preds == labels).double().mean())
    k = num_classes
    idx = labels.long() * k + preds.long()
    cm = torch.bincount(idx, minlength=k * k).reshape(k, k).double()
    tp = cm.diag()
    support = cm.sum(1) + cm.sum(0)
    present = support > 0
    f1 = torch.where(present, 2 * tp / support.clamp_min(1), torch.zeros_like(tp))
    return float(f1[present].mean())


def upcast(logits: torch.Tensor) -> torch.Tensor:
    """Half-precision logits (AMP) to float32 for the loss; float32/float64 stay as they are."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def evaluate(model, task: TaskData, split: str, batch_size: int = 256, device: str | torch.device = "cpu",
             amp: bool = False) -> tuple[float, float]:
    """(mean cross-entropy, task metric) of `model` on `task`'s `split`."""
    loss, metric, _ = evaluate_predictions(model, task, split, batch_size, device, amp)
    return loss, metric


@torch.no_grad()
def evaluate_predictions(model, task: TaskData, split: str, batch_size: int = 256, device: str | torch.device = "cpu",
                         amp: bool = False) -> tuple[float, float, torch.Tensor]:
    """(mean cross-entropy, task metric, predicted class per example, on CPU) of `model` on `split`.

    Why the predictions: the selection bootstraps the judging examples, which every seed shares,
    and needs each run's per-example answers to do so (auxsel.dev_sampling)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    n = task.size(split)
    labels = task.labels(split)
    total, preds = 0.0, []
    for start in range(0, n, batch_size):
        sl = slice(start, min(start + batch_size, n))
        with autocast(device, amp):
            logits = model(to_device(task.inputs(split, sl), device), task.name)
        y = labels[sl].to(device)
        total = total + F.cross_entropy(upcast(logits), y, reduction="sum").double()  # one sync, at the end
        preds.append(logits.argmax(1))
    model.train(was_training)
    p = torch.cat(preds).cpu() if preds else torch.empty(0, dtype=torch.long)
    return float(total) / max(n, 1), metric_value(task.metric, p, labels.cpu(), task.num_classes), p


def autocast(device: torch.device, amp: bool):
    """bf16 autocast when `amp` (CUDA, or a CPU with bf16 matmuls, e.g. AVX-512-BF16/AMX);
    parameters, optimiser state and losses stay float32."""
    if amp:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resolve_device(name: str) -> torch.device:
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AuxselError(f"device: {name!r} in params, but torch finds no CUDA device on this machine; set `device: cpu`")
    if dev.type not in ("cpu", "cuda"):
        raise AuxselError(f"device: {name!r} is not cpu or cuda")
    return dev


def make_optimizer(params: Iterable[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


# ----------------------------------------------------------------------------------------------
# the run state and its primitives


class TaskStream:
    """Seeded sampler for one task: walks a permutation of the training set, reshuffling when it
    runs out; its position persists across epochs."""

    def __init__(self, n: int, generator: torch.Generator) -> None:
        self.n, self.gen = n, generator
        self.perm = torch.randperm(n, generator=generator)
        self.pos = 0

    def take(self, k: int) -> torch.Tensor:
        out = []
        while k > 0:
            if self.pos >= self.n:
                self.perm, self.pos = torch.randperm(self.n, generator=self.gen), 0
            m = min(k, self.n - self.pos)
            out.append(self.perm[self.pos : self.pos + m])
            self.pos, k = self.pos + m, k - m
        return torch.cat(out)


@dataclass
class Meter:
    loss: float = 0.0
    n: int = 0
    preds: list = field(default_factory=list)
    labels: list = field(default_factory=list)

    def add(self, loss_sum: float, preds: torch.Tensor, labels: torch.Tensor) -> None:
        self.loss += loss_sum
        self.n += len(labels)
        self.preds.append(preds)
        self.labels.append(labels)


class Run:
    """What an epoch plan sees: the model, tasks, config, device and the shared primitives."""

    def __init__(self, model, tasks: dict[str, TaskData], target: str, cfg: TrainConfig, seed: int,
                 eval_seed: int | None = None, data_seed: int | None = None) -> None:
        if target not in tasks:
            raise AuxselError(f"target task {target!r} is not among the tasks {sorted(tasks)}")
        missing = [t for t in tasks if t not in model.heads]
        if missing:
            raise AuxselError(f"the model has no head for task(s) {missing}")
        for name, task in tasks.items():
            task.require("train")
        tasks[target].require("dev")
        # draws from the target's dev split (αVIL's fit batch, DIW's dev batches) use this seed, which
        # callers derive without the auxiliaries, so runs that differ only in them see the same dev examples
        self.eval_seed = seed if eval_seed is None else eval_seed
        self.holdout_rows = torch.empty(0, dtype=torch.long)
        if cfg.dev_holdout > 0:
            tasks = {**tasks, target: split_holdout(tasks[target], cfg.dev_holdout, self.eval_seed)}
            self.holdout_rows = holdout_rows(tasks[target].size("dev") + tasks[target].size("holdout"),
                                             cfg.dev_holdout, self.eval_seed)[0]
        self.model, self.tasks, self.target, self.cfg, self.seed = model, tasks, target, cfg, seed
        self.device = resolve_device(cfg.device)
        self.generator = torch.Generator().manual_seed(seed)
        # each task's batch stream is seeded by (data seed, task name) only - not by its position or
        # the other tasks - so runs given one data_seed draw the same batches of every task they share
        self.data_seed = seed if data_seed is None else data_seed
        self.streams = {t: TaskStream(task.size("train"), torch.Generator().manual_seed(derive_seed(self.data_seed, "stream", t)))
                        for t, task in tasks.items()}
        # every tensor a step or an evaluation reads is moved to the device once, here: no per-step host copies
        self.train_data = {t: {k: v.to(self.device) for k, v in task.splits["train"].items()} for t, task in tasks.items()}
        tgt = tasks[target]
        self.eval_task = TaskData(tgt.name, tgt.num_classes, tgt.metric, tgt.kind,
                                  {s: {k: v.to(self.device) for k, v in cols.items()} for s, cols in tgt.splits.items()
                                   if s != "train"})
        self.meters: dict[str, Meter] = {}
        self.epoch = 0

    # -- sampling
    def examples_per_task(self, task: str) -> int:
        return self.cfg.examples_per_task or self.tasks[self.target].size("train")

    def batches(self, task: str, n_examples: int | None = None) -> list[torch.Tensor]:
        """Index batches covering `n_examples` (default: examples_per_task) drawn from `task`'s stream."""
        n = self.examples_per_task(task) if n_examples is None else n_examples
        idx = self.streams[task].take(n).to(self.device)  # one index copy per task per epoch
        return list(idx.split(self.cfg.batch_size))

    def interleaved(self, task_names: Iterable[str]) -> list[tuple[str, torch.Tensor]]:
        """One epoch's batches of all `task_names`, in a seeded random interleaving."""
        per_task = {t: self.batches(t) for t in task_names}
        order = [t for t, bs in per_task.items() for _ in bs]
        perm = torch.randperm(len(order), generator=self.generator).tolist()
        pos = {t: 0 for t in per_task}
        out = []
        for i in perm:
            t = order[i]
            out.append((t, per_task[t][pos[t]]))
            pos[t] += 1
        return out

    def batch(self, task: str, idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        data = self.train_data[task]
        idx = idx.to(self.device)
        inputs = {k: v[idx] for k, v in data.items() if k != "label"}
        return inputs, data["label"][idx]

    # -- the optimiser step
    def loss(self, task: str, idx: torch.Tensor, model=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean CE loss, logits, labels) of `task` on training rows `idx` (model defaults to the run's)."""
        inputs, y = self.batch(task, idx)
        with autocast(self.device, self.cfg.amp):
            logits = (model or self.model)(inputs, task)
        return F.cross_entropy(upcast(logits), y), logits, y

    def check_finite(self, loss: torch.Tensor, task: str) -> None:
        if not torch.isfinite(loss).item():
            raise AuxselError(f"task {task!r}, epoch {self.epoch}: training loss is {float(loss.detach())} "
                              f"(diverged; lower train.lr or set train.grad_clip)")

    def step(self, task: str, idx: torch.Tensor, optimizer: torch.optim.Optimizer, weight: float = 1.0) -> float:
        """One optimiser step on `weight * CE(task, idx)`; records the unweighted loss."""
        loss, logits, y = self.loss(task, idx)
        value = loss.item()  # the one host sync per step: the NaN/inf check and the running loss
        if not math.isfinite(value):
            raise AuxselError(f"task {task!r}, epoch {self.epoch}: training loss is {value} "
                              f"(diverged; lower train.lr or set train.grad_clip)")
        optimizer.zero_grad(set_to_none=True)
        (loss * weight).backward() if weight != 1.0 else loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        optimizer.step()
        self.meters.setdefault(task, Meter()).add(value * len(y), logits.detach().argmax(1), y)
        return value

    def evaluate(self, split: str = "dev", task: str | None = None) -> tuple[float, float]:
        data = self.eval_task if task in (None, self.target) else self.tasks[task]
        return evaluate(self.model, data, split, self.cfg.eval_batch_size, self.device, self.cfg.amp)

    def holdout_predictions(self) -> tuple[float, float, dict[str, torch.Tensor]]:
        """(loss, metric, {"row", "label", "pred"}) of the target on the dev holdout: row = the
        example's row number in the target's whole dev split, so runs of different seeds, whose
        holdouts are different halves of one dev split, can be lined up example by example."""
        loss, metric, preds = evaluate_predictions(self.model, self.eval_task, "holdout", self.cfg.eval_batch_size,
                                                   self.device, self.cfg.amp)
        return loss, metric, {"row": self.holdout_rows, "label": self.eval_task.labels("holdout").cpu(), "pred": preds}


def holdout_rows(n: int, fraction: float, eval_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(held-out, kept) row numbers of an n-example dev split, drawn by (eval_seed, "holdout"): the
    same eval seed gives the same cut in every run of a seed (baseline, screens, finals)."""
    g = torch.Generator().manual_seed(derive_seed(eval_seed, "holdout"))
    perm = torch.randperm(n, generator=g)
    k = int(round(fraction * n))
    return perm[:k].sort().values, perm[k:].sort().values


def split_holdout(task: TaskData, fraction: float, eval_seed: int) -> TaskData:
    """`task` with its dev split cut in two (`holdout_rows`): "dev" keeps the part that fits and
    chooses, "holdout" the part that only judges."""
    n = task.size("dev")
    held, kept = holdout_rows(n, fraction, eval_seed)
    if not (len(held) and len(kept)):
        raise AuxselError(f"task {task.name!r}: train.dev_holdout {fraction} leaves no examples on one side of its "
                          f"{n}-example dev split")
    splits = {**task.splits, "dev": task.rows("dev", kept), "holdout": task.rows("dev", held)}
    return TaskData(task.name, task.num_classes, task.metric, task.kind, splits)


def dev_roles(task: TaskData, fraction: float, eval_seed: int) -> dict[str, Any]:
    """Which dev rows hold out (for provenance): sizes and a digest of the held-out row numbers."""
    n = task.size("dev")
    if fraction <= 0:
        return {"dev": n, "holdout": 0}
    held, _ = holdout_rows(n, fraction, eval_seed)
    return {"dev": n - len(held), "holdout": len(held), "fraction": fraction,
            "holdout_rows_sha256": hashlib.sha256(held.numpy().tobytes()).hexdigest()}


class EpochPlan(Protocol):
    """What a method supplies: `setup` once, then `epoch` per epoch, returning weight rows
    (dicts with at least epoch, task, weight, alpha).

    Checkpoints (train.resume) save what a plan carries from one epoch to the next. By default
    that is read from its attributes: optimisers made by `make_optimizer` (alone or in a dict),
    `torch.Generator`s and plain data (numbers, strings, lists and dicts of them, e.g. the task
    weights). Tensors and other objects are taken to be rebuilt by `setup` or overwritten every
    epoch. A plan that keeps other state defines `state_dict()` and `load_state_dict(state, run)`.
    """

    def setup(self, run: Run) -> None: ...

    def epoch(self, run: Run, epoch: int) -> list[dict[str, Any]]: ...


@dataclass
class TrainResult:
    """What every method returns.

    Attributes:
        method: the method's name.
        state: the selected (best target-dev) model state_dict, on CPU.
        history: rows {epoch, task, split, loss, metric, seconds}; split "train" rows are the
            epoch's running training loss/metric per task, "dev" rows the target's dev loss/metric
            after the epoch; seconds = the epoch's wall time (training + its evaluation).
        weights: rows {epoch, task, weight, alpha, ...diagnostics} per epoch per task.
        metrics: {"dev": {"loss": .., "<metric>": ..}, "test": {...}} of the target at the best epoch
            ("test" only when the target has a test split; "holdout" with `dev_holdout` > 0).
        best_epoch: epoch whose state was kept.
        final_weights: {task: weight} after the last epoch.
        epochs_run: epochs actually run (early stopping may cut them).
        resumed_from: the checkpoint's epoch when the run continued from one (train.resume), else 0.
        checkpoint_note: why a checkpoint that was there was not used ("" when none was ignored).
        holdout: with `dev_holdout` > 0, the best epoch's answers on the holdout: {"row": row number
            in the target's dev split, "label", "pred"} (Run.holdout_predictions); else None.
    """

    method: str
    state: dict[str, torch.Tensor]
    history: list[dict[str, Any]]
    weights: list[dict[str, Any]]
    metrics: dict[str, dict[str, float]]
    best_epoch: int
    final_weights: dict[str, float]
    epochs_run: int
    config: dict[str, Any] = field(default_factory=dict)
    resumed_from: int = 0
    checkpoint_note: str = ""
    holdout: dict[str, torch.Tensor] | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass


def check_rows(rows: list[dict[str, Any]], epoch: int, method: str) -> None:
    """Every number a method reports must be finite (α may be NaN: methods without α)."""
    for r in rows:
        for key, value in r.items():
            if isinstance(value, float) and not math.isfinite(value) and not (key == "alpha" and math.isnan(value)):
                raise AuxselError(f"task {r.get('task')!r}, epoch {epoch}: {method or 'the method'} produced "
                                  f"{key} = {value} (diverged)")


def trace_rows(run: Run, epoch: int, seconds: float) -> list[dict[str, Any]]:
    """train.trace: the target's holdout and test after this epoch (only the splits it has)."""
    rows = []
    for split in ("holdout", "test"):
        if run.eval_task.size(split):
            loss, metric = run.evaluate(split)
            rows.append({"epoch": epoch, "task": run.target, "split": split, "loss": loss, "metric": metric,
                         "seconds": seconds})
    return rows


def fit(model, tasks: dict[str, TaskData], target: str, plan: EpochPlan, cfg: TrainConfig, seed: int,
        method: str = "", checkpoint: str | os.PathLike | None = None,
        identity: dict[str, Any] | None = None, eval_seed: int | None = None,
        data_seed: int | None = None) -> TrainResult:
    """Run `plan` for cfg.epochs epochs; keep the best target-dev epoch; evaluate it on dev and test.

    With cfg.resume, `checkpoint` is the file the per-epoch checkpoint goes to (written to a temp
    file beside it and renamed). A checkpoint already there is used only when it was written by
    the same run: same method and `identity` (the method's options and starting weights), same
    config except `epochs`/`progress`, seed, tasks and data, and initial model; otherwise the run
    starts over and `checkpoint_note` says why. The caller deletes the file when it no longer
    needs it.
    """
    ckpt = None
    if cfg.resume:
        if checkpoint is None:
            raise AuxselError("train.resume is set but no checkpoint path was given to fit()/run_method()")
        ckpt = Path(checkpoint)
        key = run_fingerprint(model, tasks, target, cfg, seed, method, {**(identity or {}), "eval_seed": eval_seed,
                                                                        "data_seed": data_seed})
    seed_everything(seed)
    run = Run(model, tasks, target, cfg, seed, eval_seed, data_seed)
    model.to(run.device)
    model.train()
    plan.setup(run)
    tgt = run.tasks[target]
    loop: dict[str, Any] = {"history": [], "weights": [], "best_metric": -math.inf, "best_epoch": 0,
                            "best_state": None, "stale": 0, "stopped": False, "epoch": 0}
    resumed_from, note = 0, ""
    if ckpt is not None:
        saved, note = read_checkpoint(ckpt, key, cfg.epochs)
        if saved is not None:
            restore(saved, model, plan, run)
            loop = saved["loop"]
            resumed_from = loop["epoch"]
    history, weight_rows = loop["history"], loop["weights"]
    best_metric, best_epoch, best_state, stale = loop["best_metric"], loop["best_epoch"], loop["best_state"], loop["stale"]
    show = sys.stderr.isatty() if cfg.progress is None else cfg.progress
    from tqdm.auto import tqdm

    first = loop["epoch"] + 1 if not loop["stopped"] else cfg.epochs + 1
    bar = tqdm(range(first, cfg.epochs + 1), desc=f"{method or 'train'} {target}", unit="epoch",
               disable=not show, leave=False)
    epochs_run = loop["epoch"]
    for epoch in bar:
        run.epoch = epoch
        run.meters = {}
        t0 = time.perf_counter()
        model.train()
        try:
            rows = plan.epoch(run, epoch)
        except AuxselError as exc:
            if f"epoch {epoch}" in str(exc):
                raise
            raise AuxselError(f"task {target!r}, epoch {epoch}: {exc}") from exc
        check_rows(rows, epoch, method)
        dev_loss, dev_metric = run.evaluate("dev")
        if not math.isfinite(dev_loss):
            raise AuxselError(f"task {target!r}, epoch {epoch}: target dev loss is {dev_loss} (diverged)")
        seconds = time.perf_counter() - t0
        epochs_run = epoch
        for t, m in run.meters.items():
            p = torch.cat(m.preds).cpu() if m.preds else torch.empty(0, dtype=torch.long)
            y = torch.cat(m.labels).cpu() if m.labels else torch.empty(0, dtype=torch.long)
            history.append({"epoch": epoch, "task": t, "split": "train", "loss": m.loss / max(m.n, 1),
                            "metric": metric_value(tasks[t].metric, p, y, tasks[t].num_classes), "seconds": seconds})
        history.append({"epoch": epoch, "task": target, "split": "dev", "loss": dev_loss, "metric": dev_metric, "seconds": seconds})
        if cfg.trace:
            history.extend(trace_rows(run, epoch, seconds))
        for r in rows:
            r.setdefault("alpha", float("nan"))
        weight_rows.extend(rows)
        bar.set_postfix(dev=f"{dev_metric:.4f}")
        if dev_metric > best_metric:
            best_metric, best_epoch, stale = dev_metric, epoch, 0
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            stale += 1
        stop = cfg.patience is not None and stale >= cfg.patience
        if ckpt is not None:
            loop = {"history": history, "weights": weight_rows, "best_metric": best_metric, "best_epoch": best_epoch,
                    "best_state": best_state, "stale": stale, "stopped": stop, "epoch": epoch}
            write_checkpoint(ckpt, key, loop, model, plan, run)
        if stop:
            break
    bar.close()
    model.load_state_dict(best_state)
    metrics = {}
    holdout = None
    for split in ("dev", "holdout", "test"):
        if tgt.size(split):
            if split == "holdout":
                loss, met, holdout = run.holdout_predictions()
            else:
                loss, met = run.evaluate(split)
            metrics[split] = {"loss": loss, tgt.metric: met}
    last = [r for r in weight_rows if r["epoch"] == epochs_run]
    final_weights = {r["task"]: float(r["weight"]) for r in last}
    return TrainResult(method=method, state=best_state, history=history, weights=weight_rows, metrics=metrics,
                       best_epoch=best_epoch, final_weights=final_weights, epochs_run=epochs_run,
                       resumed_from=resumed_from, checkpoint_note=note, holdout=holdout)


# ----------------------------------------------------------------------------------------------
# checkpoints (train.resume)

CHECKPOINT_FORMAT = 1


def _digest(h, t: torch.Tensor) -> None:
    t = t.detach().to("cpu").contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy())


def run_fingerprint(model, tasks: dict[str, TaskData], target: str, cfg: TrainConfig, seed: int, method: str,
                    identity: dict[str, Any] | None) -> str:
    """What a checkpoint must have been written by: config (bar epochs/progress/resume), seed,
    method and its options, the tasks' data and the initial model state."""
    h = hashlib.sha256()
    conf = {k: v for k, v in cfg.to_dict().items() if k not in ("epochs", "progress", "resume")}
    h.update(json.dumps({"format": CHECKPOINT_FORMAT, "cfg": conf, "seed": seed, "method": method, "target": target,
                         "identity": identity or {}, "tasks": list(tasks)}, sort_keys=True, default=str).encode())
    for name, task in tasks.items():
        h.update(f"{name}/{task.num_classes}/{task.metric}/{task.kind}".encode())
        for split in sorted(task.splits):
            for col in sorted(task.splits[split]):
                h.update(f"{split}/{col}".encode())
                _digest(h, task.splits[split][col])
    for name, value in model.state_dict().items():
        h.update(name.encode())
        _digest(h, value)
    return h.hexdigest()


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _optimizer_state(opt: torch.optim.Optimizer, names: dict[int, str]) -> dict[str, Any]:
    if len(opt.param_groups) != 1:
        raise AuxselError("train.resume: cannot checkpoint an optimiser with several parameter groups")
    try:
        params = [names[id(p)] for p in opt.param_groups[0]["params"]]
    except KeyError:
        raise AuxselError("train.resume: an optimiser holds a tensor that is not a model parameter") from None
    return {"params": params, "state": opt.state_dict()}


def _optimizer_from(saved: dict[str, Any], params: dict[str, torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    opt = make_optimizer([params[n] for n in saved["params"]], cfg)
    opt.load_state_dict(saved["state"])
    return opt


def plan_state(plan: Any, model) -> dict[str, Any]:
    """A plan's cross-epoch state (see EpochPlan)."""
    if hasattr(plan, "state_dict"):
        return {"custom": plan.state_dict()}
    names = {id(p): n for n, p in model.named_parameters()}
    out: dict[str, Any] = {}
    for key, value in vars(plan).items():
        if isinstance(value, torch.optim.Optimizer):
            out[key] = ("optimizer", _optimizer_state(value, names))
        elif isinstance(value, dict) and value and all(isinstance(v, torch.optim.Optimizer) for v in value.values()):
            out[key] = ("optimizers", {k: _optimizer_state(v, names) for k, v in value.items()})
        elif isinstance(value, torch.Generator):
            out[key] = ("generator", value.get_state())
        elif _plain(value):
            out[key] = ("value", value)
    return out


def load_plan_state(plan: Any, state: dict[str, Any], run: Run) -> None:
    if "custom" in state:
        plan.load_state_dict(state["custom"], run)
        return
    params = dict(run.model.named_parameters())
    for key, (kind, value) in state.items():
        if kind == "optimizer":
            setattr(plan, key, _optimizer_from(value, params, run.cfg))
        elif kind == "optimizers":
            setattr(plan, key, {k: _optimizer_from(v, params, run.cfg) for k, v in value.items()})
        elif kind == "generator":
            getattr(plan, key).set_state(value)
        else:
            setattr(plan, key, value)


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": None, "cuda": None}
    try:
        import numpy as np

        name, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached))
    except ImportError:  # pragma: no cover
        pass
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if state["numpy"] is not None:
        import numpy as np

        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if state["cuda"] is not None:
        torch.cuda.set_rng_state_all(state["cuda"])


def write_checkpoint(path: Path, key: str, loop: dict[str, Any], model, plan: Any, run: Run) -> None:
    """Everything needed to continue after `loop["epoch"]`, written to a temp file and renamed."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "fingerprint": key,
        "loop": loop,
        "model": {k: v.detach().to("cpu") for k, v in model.state_dict().items()},
        "plan": plan_state(plan, model),
        "run": {"generator": run.generator.get_state(),
                "streams": {t: {"perm": s.perm, "pos": s.pos, "gen": s.gen.get_state()} for t, s in run.streams.items()}},
        "rng": _rng_state(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_checkpoint(path: Path, key: str, epochs: int) -> tuple[dict[str, Any] | None, str]:
    """(checkpoint, "") when `path` holds a usable checkpoint of this run, else (None, why not)."""
    if not path.is_file():
        return None, ""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: start over, say why
        return None, f"unreadable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        return None, "not a checkpoint of this version"
    if state.get("fingerprint") != key:
        return None, "written by a different run (config, seed, data or initial model differ)"
    if state["loop"]["epoch"] > epochs:
        return None, f"its epoch {state['loop']['epoch']} is past train.epochs={epochs}"
    return state, ""


def restore(state: dict[str, Any], model, plan: Any, run: Run) -> None:
    model.load_state_dict(state["model"])
    load_plan_state(plan, state["plan"], run)
    run.generator.set_state(state["run"]["generator"])
    for t, s in state["run"]["streams"].items():
        stream = run.streams[t]
        stream.perm, stream.pos = s["perm"], s["pos"]
        stream.gen.set_state(s["gen"])
    _set_rng_state(state["rng"])
