"""αVIL (α-Variable Importance Learning): task weights estimated from task-specific parameter
updates δ_t, fitted on the target's dev loss between epochs.

One implementation, every open choice a key of `AvilConfig`. Two presets:
- `avil_literal`: the paper's method as far as its text can be recovered (DESIGN.md steps 1-4).
- `avil` (default): the share read-out (docs/methods.md derives it and has the evidence);
  `PREVIOUS` holds the overrides that give back `avil` as it was before issue 13 (α read-out).

Per epoch (both presets):
  1. for every task t: from the shared θ, train on its epoch sample → δ_t = θ_t − θ (flat, K x P);
  2. fit the mixing coefficients on the target's dev loss at the merged parameters (one
     forward/backward per evaluation through `torch.func.functional_call`);
  3. merge: θ ← the fitted mix;
  4. read the weights out of the fit.
readout="share" (default): coefficients c of the trunk updates rescaled to the target's norm, a
profiled logit temperature, L-BFGS to a gradient tolerance from a fixed start; shares λ = c/Σ|c|.
readout="alpha": α fitted from α = w or 1 for a few evaluations, weights by EMA or additive update.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
from torch.func import functional_call
from torch.nn import functional as F

from auxsel.errors import AuxselError
from auxsel.methods.flat import FlatParams
from auxsel.methods.share_fit import ShareObjective, balanced_weights, inverse_temperature, minimise  # noqa: F401
from auxsel.train import Run, autocast, make_optimizer, to_device, upcast


@dataclass
class AvilConfig:
    """αVIL options (params.yaml: the `avil` / `avil_literal` sections; keys map 1:1).

    Defaults below are the `avil` preset; `AvilConfig.preset("avil_literal")` gives the literal one
    (shown as "literal:").

    Attributes:
        rho: fraction of each task's training set sampled per epoch; None = `train.examples_per_task`
            (default None; literal: None).
        task_loss: "unit" trains every task update at loss weight 1 and applies weights only in the
            merge; "weighted" trains task t on w_t·L_t (default "unit"; literal: "weighted").
        keep_optimizer_state: each task keeps its own optimiser (momentum) across epochs; False
            re-creates it every epoch (default True; literal: False).
        heads: "own" - each task head takes its own full update, α mixes only the shared trunk;
            "alpha" - α scales the whole δ_t, heads included (default "own"; literal: "alpha").
        merge: "mean" - θ + Σ_t α_t δ_t / Σ_t w_t (a weighted average of the updates when α = w);
            "sum" - θ + Σ_t α_t δ_t (default "mean"; literal: "sum").
        alpha_param: "log" - α_t = exp(u_t) (α = s·π: step size s = Σα and split π = α/Σα, both free,
            α stays > 0); "direct" - α itself, unconstrained (default "log"; literal: "direct").
        alpha_init: "ones" - α ← 1 every epoch; "weights" - α ← w (warm start from the running
            weights) (default "weights"; literal: "ones").
        alpha_solver: "lbfgs" (strong-Wolfe line search), "adam" or "sgd" (default "lbfgs";
            literal: "adam").
        alpha_steps: solver budget; for lbfgs the number of dev-loss evaluations (each one
            forward/backward on the dev batch), for adam/sgd the number of steps
            (default 4; literal: 10).
        alpha_lr: solver learning rate (default 1.0; literal: 0.05).
        dev_batch: size of the fixed, seeded sample of the target's dev split used for every α fit;
            None = the whole dev split (default 256; literal: None).
        dev_rotate: "share": each epoch's fit reads the next dev_batch examples of one seeded
            permutation of the dev split (cyclically) instead of the same sample every epoch, so the
            fits of a run see the whole split and no single sample steers every merge; screens of
            one seed still fit epoch e on the same examples (default False).
        weight_update: "ema" - w_t ← max(floor, (1−β)·w_t + β·α_t/α_target), i.e. a moving average
            of each task's α relative to the target's; "additive" - w_t ← max(0, w_t + α_t − 1)
            (default "ema"; literal: "additive").
        weight_ema: β of the moving average (default 0.3).
        weight_floor: lower bound of a weight under "ema" (default 0.02).
        weight_cap: upper bound of α_t/α_target in the "ema" update, so a fit that drives the
            target's α toward 0 cannot blow the others' weights up (default 4.0).
        hold_target_weight: keep the target's weight at 1 (weights of the others are read relative
            to it, comparable across pairwise screens) (default True; literal: False).
        readout: "share" - fit the coefficients c of the norm-matched trunk updates (and a logit
            temperature) to a tolerance from the start c = (1, 0, …, 0), merge θ + Σ c_k·D_k and read
            task k's share λ_k = c_k / Σ|c| (importance = mean λ over epochs; weight = mean λ_k /
            mean λ_target); "alpha" - the α fit + weight update above (the literal preset and the
            previous default) (default "share"; literal: "alpha"). With "share" the keys rho,
            task_loss, keep_optimizer_state, dev_batch, weight_cap and hold_target_weight still
            apply; heads is "own", and merge / alpha_* / weight_update / weight_ema / weight_floor do not.
        fit_tol: "share": stop when the largest gradient entry of the fit is ≤ fit_tol (default 1e-3;
            ReLU / max-pool kinks make one-sided gradients jump by ~1e-4..1e-3, so much less is not
            reachable).
        fit_ftol: "share": also stop when an iteration lowers the fitting loss by less than this (nats;
            at a minimum on a ReLU kink the gradient does not vanish) (default 1e-5).
        fit_rtol: "share": also stop when an iteration lowers the fitting loss by less than this
            fraction of what the fit has gained since its start; unlike fit_ftol it has no scale, so
            it cannot stop a fit that gains little before its first step (default 0: off).
        fit_evals: "share": most dev-loss evaluations (forward + backward) per fit (default 30).
        temperature: "share": profile out a logit temperature in the fit, so a change of confidence
            alone earns no share (default True).
        temperature_fixed: "share": solve the temperature once per fit, at the target's own step
            (the fit's start), and hold it while the coefficients are fitted. A temperature profiled
            at every point leaves the step length nearly undetermined (logits scaled up by a longer
            step are scaled back down); held fixed, a step that overshoots costs what it costs the
            model (default False).
        fit_loss: "share": the fitting batch's loss - "mean" cross-entropy or "balanced" (the mean over
            classes of each class's mean cross-entropy, the loss a macro-averaged metric weighs). An
            ablation: on the frozen-encoder subjectivity pair (8 % minority class, macro-F1) it made
            the first fits' steps wreck the model (bench/README.md §7) (default "mean").
        merge_against: "share": True merges negative coefficients as fitted (moves against a task
            whose update hurts the fitting batch); False merges them as 0, so training never moves
            against an auxiliary task, and the read-out stays signed (default False: moving against
            a task made its next updates, and so its shares, noisier - bench/README.md §7).
        merge_step: "share": "fit" merges the fitted mix at the fitted step length; "own" rescales it so
            that the target's coefficient is 1 (each auxiliary update enters at c_k / c_target, at most
            weight_cap; the target's own step when c_target <= 0): the fit chooses the mix, the target's
            optimiser the pace (default "fit").
        merge_guard: "share": when a fit stops without converging and its mix's untempered loss on
            the fitting batch is above both the loss before the epoch and the loss after the target's
            own update, train on from the target's own update instead (the fit's shares still
            count). The profiled temperature makes the fit's loss nearly flat along the step length
            (scaling the logits up can be undone by the temperature), so an unconverged fit can stop
            at an overlong step that leaves the model itself at chance (default True; docs/methods.md,
            "The merge guard").
        merge_backtrack: "share": when > 0, the guard looks at every fit, converged or not, and
            first shortens a mix that fails it along its own direction - halving its coefficients up
            to this many times until its untempered fitting loss is no longer above both the epoch's
            start and the target's own step - before falling back to the target's own step. The
            candidates stay in the step (at its shorter length) and the shares are the fit's
            (default 0: the guard as above; docs/methods.md, "The merge guard").
        merge_temperature: "share": fold the temperature into the target's head when merging - its
            output layer's weight and bias times the inverse temperature β solved for the merged mix -
            so the model training goes on from is the model the fit scored (a long step with cooled
            logits is merged cooled, not at temperature 1). The merged model's fitting loss is then
            never above the target's own step's, and the guard has nothing to catch (default False;
            docs/methods.md, "The merge guard").
    """

    rho: float | None = None
    task_loss: str = "unit"
    keep_optimizer_state: bool = True
    heads: str = "own"
    merge: str = "mean"
    alpha_param: str = "log"
    alpha_init: str = "weights"
    alpha_solver: str = "lbfgs"
    alpha_steps: int = 4
    alpha_lr: float = 1.0
    dev_batch: int | None = 256
    dev_rotate: bool = False
    weight_update: str = "ema"
    weight_ema: float = 0.3
    weight_floor: float = 0.02
    weight_cap: float = 4.0
    hold_target_weight: bool = True
    readout: str = "share"
    fit_tol: float = 1e-3
    fit_ftol: float = 1e-5
    fit_rtol: float = 0.0
    fit_evals: int = 30
    temperature: bool = True
    temperature_fixed: bool = False
    fit_loss: str = "mean"
    merge_against: bool = False
    merge_guard: bool = True
    merge_backtrack: int = 0
    merge_step: str = "fit"
    merge_temperature: bool = False

    _CHOICES = {
        "readout": ("share", "alpha"),
        "fit_loss": ("mean", "balanced"),
        "merge_step": ("fit", "own"),
        "task_loss": ("unit", "weighted"),
        "heads": ("own", "alpha"),
        "merge": ("mean", "sum"),
        "alpha_param": ("log", "direct"),
        "alpha_init": ("ones", "weights"),
        "alpha_solver": ("lbfgs", "adam", "sgd"),
        "weight_update": ("ema", "additive"),
    }

    def __post_init__(self) -> None:
        for key, allowed in self._CHOICES.items():
            if getattr(self, key) not in allowed:
                raise AuxselError(f"avil.{key}: {getattr(self, key)!r} is not one of {', '.join(allowed)}")
        if self.alpha_steps < 0:
            raise AuxselError("avil.alpha_steps must be >= 0")
        if self.rho is not None and not 0 < self.rho:
            raise AuxselError("avil.rho must be > 0 or null")
        if not 0 <= self.weight_floor <= self.weight_cap:
            raise AuxselError("avil: need 0 <= weight_floor <= weight_cap")
        if not 0 < self.weight_ema <= 1:
            raise AuxselError("avil.weight_ema must be in (0, 1]")
        if self.dev_batch is not None and self.dev_batch < 1:
            raise AuxselError("avil.dev_batch must be >= 1 or null")
        if not self.fit_tol > 0:
            raise AuxselError("avil.fit_tol must be > 0")
        if not self.fit_ftol >= 0:
            raise AuxselError("avil.fit_ftol must be >= 0")
        if not 0 <= self.fit_rtol < 1:
            raise AuxselError("avil.fit_rtol must be in [0, 1) (a fraction of the fit's gain so far)")
        if self.fit_evals < 1:
            raise AuxselError("avil.fit_evals must be >= 1")
        if not 0 <= self.merge_backtrack <= 30:
            raise AuxselError("avil.merge_backtrack must be in [0, 30] (halvings of the merged step)")


    @classmethod
    def preset(cls, method: str = "avil", overrides: dict[str, Any] | None = None) -> "AvilConfig":
        base = cls() if method == "avil" else cls(**LITERAL) if method == "avil_literal" else None
        if base is None:
            raise AuxselError(f"no αVIL preset named {method!r} (avil, avil_literal)")
        d = dict(overrides or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise AuxselError(f"{method}: unknown key(s) {unknown}; known: {sorted(known)}")
        return replace(base, **d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


LITERAL: dict[str, Any] = dict(
    rho=None, task_loss="weighted", keep_optimizer_state=False, heads="alpha", merge="sum", alpha_param="direct",
    alpha_init="ones", alpha_solver="adam", alpha_steps=10, alpha_lr=0.05, dev_batch=None, weight_update="additive",
    hold_target_weight=False, readout="alpha",
)

# `avil` as it was up to issue 13 (α in log space warm-started at w, 4 L-BFGS evaluations, EMA of α_t/α_target):
# kept so that benches can show it beside the current default.
PREVIOUS: dict[str, Any] = dict(readout="alpha", dev_batch=256)


class AlphaObjective:
    """L_target(dev batch, θ + c·Σ_t α_t δ_t) as a function of α, via functional_call.

    With heads="own", α mixes only the shared slice; task t's head gets θ_head + δ_t[head] (the
    others' deltas are zero there), so the target's head is fixed during the fit."""

    def __init__(self, model, flat: FlatParams, theta: torch.Tensor, deltas: torch.Tensor, scale: float,
                 heads: str, batch: dict[str, torch.Tensor], labels: torch.Tensor, target: str,
                 amp: bool = False) -> None:
        self.model, self.flat, self.theta, self.deltas, self.amp = model, flat, theta, deltas, amp
        self.scale, self.heads, self.batch, self.labels, self.target = scale, heads, batch, labels, target
        if heads == "own":
            s = flat.shared
            self.fixed_tail = theta[s:] + deltas[:, s:].sum(0)

    def params(self, alpha: torch.Tensor) -> torch.Tensor:
        if self.heads == "alpha":
            return self.theta + self.scale * (alpha @ self.deltas)
        s = self.flat.shared
        return torch.cat([self.theta[:s] + self.scale * (alpha @ self.deltas[:, :s]), self.fixed_tail])

    @torch.no_grad()
    def merge(self, alpha: torch.Tensor) -> torch.Tensor:
        """The same θ' as `params`, accumulated task by task (θ + c·α_1·δ_1 + c·α_2·δ_2 + ...), so
        that α = 1, c = 1 gives exactly θ + δ_1 + δ_2 + ... ."""
        s = self.flat.shared if self.heads == "own" else self.theta.numel()
        out = self.theta.clone()
        for k in range(len(alpha)):
            coef = float(self.scale * alpha[k])
            out[:s] += self.deltas[k, :s] if coef == 1.0 else coef * self.deltas[k, :s]
            if s < out.numel():
                out[s:] += self.deltas[k, s:]
        return out

    def __call__(self, alpha: torch.Tensor) -> torch.Tensor:
        params = self.flat.as_dict(self.params(alpha))  # float32 always: θ + c·α·δ is not rounded to bf16
        with autocast(self.theta.device, self.amp):
            logits = functional_call(self.model, params, (self.batch, self.target))
        return F.cross_entropy(upcast(logits), self.labels)


class Avil:
    def __init__(self, cfg: AvilConfig, weights: dict[str, float]) -> None:
        self.cfg = cfg
        self.weights = {t: float(w) for t, w in weights.items()}

    # -- setup
    def setup(self, run: Run) -> None:
        self.tasks = list(self.weights)
        self.target = run.target
        if self.tasks[0] != run.target:
            raise AuxselError("αVIL: the target must be the first task")
        self.flat = FlatParams(run.model)
        self.K = len(self.tasks)
        dev = run.tasks[run.target]
        n_dev = dev.size("dev")
        # seeded by the run's evaluation seed, which does not depend on the auxiliaries: every
        # pairwise screen of one seed fits on the same dev examples, so their read-outs compare
        g = torch.Generator().manual_seed(run.eval_seed * 104729 + 17)
        self.dev_order = torch.randperm(n_dev, generator=g)
        self.rotating = bool(self.cfg.dev_rotate and self.cfg.dev_batch and self.cfg.readout == "share")
        self.carry: tuple[torch.Tensor, int, float] | None = None  # (θ merged, its batch, its fitting loss)
        self.use_dev_batch(run, 0)
        self.deltas = torch.zeros(self.K, self.flat.size, device=run.device, dtype=self.flat.params[0].dtype)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.share_sum = {t: 0.0 for t in self.tasks}
        self.fits = 0

    @torch.no_grad()
    def loss_before(self, run: Run, theta: torch.Tensor) -> float:
        """The untempered fitting loss at the epoch's start θ: the previous epoch's merged loss when
        θ is exactly what it merged and the fitting batch is the same (one forward pass saved), else
        a forward pass."""
        if self.carry is not None and self.carry[1] == self.batch_key and torch.equal(self.carry[0], theta):
            return self.carry[2]
        with autocast(run.device, run.cfg.amp):
            logits = run.model(self.dev_inputs, self.target)
        return float(F.cross_entropy(upcast(logits), self.dev_labels, weight=self.class_weight))

    def use_dev_batch(self, run: Run, epoch: int) -> None:
        """Load the fitting batch of `epoch` (0-based): the first dev_batch examples of the seeded
        permutation, or with dev_rotate the epoch's slice of it, taken cyclically."""
        n_dev, size = len(self.dev_order), self.cfg.dev_batch
        if not size:
            pick = torch.arange(n_dev)
        elif self.rotating:
            pick = self.dev_order[(epoch * size + torch.arange(min(size, n_dev))) % n_dev]
        else:
            pick = self.dev_order[:size]
        pick = pick.sort().values
        self.batch_key = epoch if self.rotating else 0
        dev = run.tasks[run.target]
        self.dev_inputs = to_device(dev.inputs("dev", pick), run.device)
        self.dev_labels = dev.labels("dev", pick).to(run.device)
        self.class_weight = balanced_weights(self.dev_labels, dev.num_classes) if self.cfg.fit_loss == "balanced" else None

    def _optimizer(self, run: Run, task: str) -> torch.optim.Optimizer:
        if task not in self.optimizers or not self.cfg.keep_optimizer_state:
            params = list(run.model.trunk.parameters()) + list(run.model.heads[task].parameters())
            self.optimizers[task] = make_optimizer(params, run.cfg)
        return self.optimizers[task]

    def _n_examples(self, run: Run, task: str) -> int:
        if self.cfg.rho is None:
            return run.examples_per_task(task)
        return max(1, math.ceil(self.cfg.rho * run.tasks[task].size("train")))

    # -- step 1
    def task_updates(self, run: Run, theta: torch.Tensor) -> None:
        for k, task in enumerate(self.tasks):
            w = self.weights[task] if self.cfg.task_loss == "weighted" else 1.0
            if w == 0:  # a zero-weighted loss moves nothing: skip the work
                self.deltas[k].zero_()
                continue
            self.flat.set(theta)
            opt = self._optimizer(run, task)
            for idx in run.batches(task, self._n_examples(run, task)):
                run.step(task, idx, opt, w)
            torch.sub(self.flat.get(), theta, out=self.deltas[k])
        self.flat.set(theta)

    # -- step 2
    def objective(self, run: Run, theta: torch.Tensor) -> AlphaObjective:
        scale = 1.0 / sum(self.weights.values()) if self.cfg.merge == "mean" else 1.0
        return AlphaObjective(run.model, self.flat, theta, self.deltas, scale, self.cfg.heads, self.dev_inputs,
                              self.dev_labels, self.target, amp=run.cfg.amp)

    def alpha_init(self) -> torch.Tensor:
        if self.cfg.alpha_init == "ones":
            a = [1.0] * self.K
        else:
            a = [max(self.weights[t], 1e-6) for t in self.tasks]
        return torch.tensor(a, dtype=self.deltas.dtype, device=self.deltas.device)

    def solve(self, obj: AlphaObjective, alpha0: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Fit α; returns (α, number of objective evaluations)."""
        cfg = self.cfg
        if cfg.alpha_steps == 0:
            return alpha0.clone(), 0
        log = cfg.alpha_param == "log"
        u = (alpha0.clamp_min(1e-8).log() if log else alpha0.clone()).requires_grad_(True)
        to_alpha = (lambda v: v.exp()) if log else (lambda v: v)
        evals = 0

        def closure() -> torch.Tensor:
            nonlocal evals
            evals += 1
            opt.zero_grad(set_to_none=True)
            loss = obj(to_alpha(u))
            loss.backward()
            return loss

        if cfg.alpha_solver == "lbfgs":
            opt = torch.optim.LBFGS([u], lr=cfg.alpha_lr, max_iter=cfg.alpha_steps, max_eval=cfg.alpha_steps,
                                    history_size=10, line_search_fn="strong_wolfe", tolerance_grad=1e-9,
                                    tolerance_change=1e-12)
            opt.step(closure)
        else:
            cls = torch.optim.Adam if cfg.alpha_solver == "adam" else torch.optim.SGD
            opt = cls([u], lr=cfg.alpha_lr)
            for _ in range(cfg.alpha_steps):
                opt.step(closure)
        alpha = to_alpha(u.detach())
        if not torch.isfinite(alpha).all():
            raise AuxselError(f"αVIL: the α fit diverged (α = {alpha.tolist()}); lower avil.alpha_lr")
        return alpha, evals

    # -- step 4
    def update_weights(self, alpha: torch.Tensor) -> None:
        a = dict(zip(self.tasks, alpha.tolist()))
        if self.cfg.weight_update == "additive":
            for t in self.tasks:
                self.weights[t] = max(0.0, self.weights[t] + a[t] - 1.0)
        else:
            ref = a[self.target]
            b, floor = self.cfg.weight_ema, self.cfg.weight_floor
            for t in self.tasks:
                rel = min(a[t] / ref, self.cfg.weight_cap) if ref > 0 else self.cfg.weight_cap
                self.weights[t] = max(floor, (1 - b) * self.weights[t] + b * rel)
        if self.cfg.hold_target_weight:
            self.weights[self.target] = 1.0

    def epoch(self, run: Run, epoch: int) -> list[dict[str, Any]]:
        return self.epoch_share(run, epoch) if self.cfg.readout == "share" else self.epoch_alpha(run, epoch)

    # -- the share read-out (readout="share")
    def share_weights(self) -> dict[str, float]:
        """Weights from the mean shares: w_k = mean λ_k / mean λ_target, clipped to [0, weight_cap]
        (the target's is 1); a candidate as useful as the target's own update gets 1."""
        mean = {t: self.share_sum[t] / max(self.fits, 1) for t in self.tasks}
        ref = mean[self.target]
        out = {}
        for t in self.tasks:
            rel = mean[t] / ref if ref > 0 else (self.cfg.weight_cap if mean[t] > 0 else 0.0)
            out[t] = min(max(rel, 0.0), self.cfg.weight_cap)
        out[self.target] = 1.0
        return out

    def epoch_share(self, run: Run, epoch: int) -> list[dict[str, Any]]:
        model = run.model
        theta = self.flat.get().clone()
        t0 = time.perf_counter()
        if self.rotating and epoch > 1:
            self.use_dev_batch(run, epoch - 1)
        self.task_updates(run, theta)
        t1 = time.perf_counter()
        obj = ShareObjective(model, self.flat, theta, self.deltas, self.dev_inputs, self.dev_labels, self.target,
                             self.cfg.temperature, amp=run.cfg.amp, fixed_temperature=self.cfg.temperature_fixed,
                             class_weight=self.class_weight)
        v0 = torch.zeros(self.K, dtype=theta.dtype, device=theta.device)
        v0[0] = 1.0  # the target's own update: a start that no weight or earlier epoch moves
        model.eval()
        before = self.loss_before(run, theta)
        m = obj.whitening()
        fit = minimise(lambda b: obj(m @ b), torch.linalg.solve(m, v0), self.cfg.fit_tol, self.cfg.fit_evals,
                       self.cfg.fit_ftol, self.cfg.fit_rtol)
        c = m @ fit["v"]
        raw_own = obj.raw_start  # the first evaluation is at v0: the target's own update
        merged, raw_fit, raw_merged, scale = self.merge(obj, c, raw_own, before, fit["converged"])
        merged_from = "own" if scale == 0 else "fit"
        model.train()
        self.flat.set(merged)
        self.carry = (merged, self.batch_key, raw_merged)
        t2 = time.perf_counter()
        step = float(c.abs().sum())
        shares = (c / step).tolist() if step > 0 else [0.0] * self.K
        for t, lam in zip(self.tasks, shares):
            self.share_sum[t] += lam
        self.fits += 1
        weights = self.share_weights()
        self.weights = weights
        norms = self.trunk_norms()
        cos = self.cosines()
        rows = []
        for k, t in enumerate(self.tasks):
            rows.append({"epoch": epoch, "task": t, "weight": weights[t], "alpha": float(c[k] * obj.scale[k]),
                         "share": shares[k], "importance": self.share_sum[t] / self.fits, "coef": float(c[k]),
                         "step": step, "temperature": 1.0 / obj.beta,
                         "delta_norm": float(norms[k]), "cos_target": float(cos[k]),
                         "dev_loss_before": before, "dev_loss_after": fit["loss"], "dev_loss_own": raw_own,
                         "dev_loss_fit": raw_fit, "dev_loss_merged": raw_merged, "merged_from": merged_from, "merge_scale": scale,
                         "merged_temperature": 1.0 / self.merged_beta, "fit_iters": fit["iters"],
                         "fit_evals": fit["evals"], "fit_restarts": fit["restarts"],
                         "fit_grad_max": fit["grad_max"], "fit_stop": fit["stop"],
                         "fit_converged": fit["converged"],
                         "update_seconds": t1 - t0, "solve_seconds": t2 - t1})
        return rows

    @torch.no_grad()
    def merge(self, obj: ShareObjective, c: torch.Tensor, raw_own: float, before: float,
              converged: bool) -> tuple[torch.Tensor, float, float, float]:
        """The parameters training goes on from, the fitted mix's untempered fitting loss, the merged
        parameters' untempered fitting loss, and the length merged as a fraction of the fitted mix's
        (1: as fitted; 0: the target's own step instead).

        The fitted mix (negative auxiliary coefficients as 0 unless `merge_against`) is merged unless
        `merge_guard` finds it worse on the fitting batch than both not moving (`before`) and the
        target's own step (`raw_own`). The profiled temperature makes the fit's loss nearly flat along
        the step length, so a fit can end at a step the untempered model cannot use (measured: 36×
        the target's update, dev loss 40, chance for the rest of the run). Without `merge_backtrack`
        the guard looks only at fits that did not converge and trains on from the target's own step;
        with it, every fit's mix is first halved along its own direction until it passes (the loss
        returns to `before` as the length goes to 0), so the candidates stay in training
        (docs/methods.md, "The merge guard"). With `merge_temperature` each candidate merge is
        the folded model (`ShareObjective.folded_at`) and its loss the tempered one; the β folded
        in is left in `self.merged_beta` (1 when nothing is folded)."""
        own = torch.zeros_like(c)
        own[0] = 1.0  # the target's own step
        coef = c if self.cfg.merge_against else torch.cat([c[:1], c[1:].clamp_min(0.0)])
        if self.cfg.merge_step == "own":
            cap = self.cfg.weight_cap
            coef = torch.cat([own[:1], (coef[1:] / c[0]).clamp(-cap, cap)]) if c[0] > 0 else own
        raw = obj.raw_loss_at(coef)
        fold = self.cfg.merge_temperature

        def at(k: torch.Tensor) -> tuple[torch.Tensor, float]:  # what merging k gives, and its fitting loss
            if fold:
                params, loss, self.merged_beta = obj.folded_at(k)
                return params, loss
            return obj.params(k), obj.raw_loss_at(k)

        self.merged_beta = 1.0
        params, loss = at(coef) if fold else (obj.params(coef), raw)
        bound = max(raw_own, before)
        halvings = self.cfg.merge_backtrack
        if not self.cfg.merge_guard or loss <= bound or (converged and not halvings):
            return params, raw, loss, 1.0
        scale = 1.0
        for _ in range(halvings):
            scale /= 2
            params, shorter = at(coef * scale)
            if shorter <= bound:
                return params, raw, shorter, scale
        self.merged_beta = 1.0
        return obj.params(own), raw, raw_own, 0.0

    def trunk_norms(self) -> torch.Tensor:
        return self.deltas[:, : self.flat.shared].norm(dim=1)

    def cosines(self) -> torch.Tensor:
        shared = self.deltas[:, : self.flat.shared]
        norms = shared.norm(dim=1)
        return (shared @ shared[0]) / (norms * norms[0]).clamp_min(1e-30)

    # -- the α read-out (readout="alpha": `avil_literal` and the previous `avil`)
    def epoch_alpha(self, run: Run, epoch: int) -> list[dict[str, Any]]:
        model = run.model
        theta = self.flat.get().clone()
        t0 = time.perf_counter()
        self.task_updates(run, theta)
        t1 = time.perf_counter()
        obj = self.objective(run, theta)
        alpha0 = self.alpha_init()
        model.eval()
        with torch.no_grad():
            with autocast(run.device, run.cfg.amp):
                logits = model(self.dev_inputs, self.target)
            before = float(F.cross_entropy(upcast(logits), self.dev_labels))
            at_init = float(obj(alpha0))
        alpha, evals = self.solve(obj, alpha0)
        with torch.no_grad():
            merged = obj.merge(alpha)
            after = float(obj(alpha))
        model.train()
        self.flat.set(merged)
        t2 = time.perf_counter()
        norms, cos = self.trunk_norms(), self.cosines()
        self.update_weights(alpha)
        rows = []
        for k, t in enumerate(self.tasks):
            rows.append({"epoch": epoch, "task": t, "weight": self.weights[t], "alpha": float(alpha[k]),
                         "delta_norm": float(norms[k]), "cos_target": float(cos[k]),
                         "dev_loss_before": before, "dev_loss_init": at_init, "dev_loss_after": after,
                         "alpha_evals": evals, "update_seconds": t1 - t0, "solve_seconds": t2 - t1})
        for r in rows:
            if not math.isfinite(r["weight"]):
                raise AuxselError(f"task {r['task']!r}, epoch {epoch}: αVIL weight is {r['weight']}")
        return rows
