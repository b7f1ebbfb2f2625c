"""The share fit of αVIL's default read-out: the objective (with a profiled logit temperature)
and the solver that takes it to a gradient tolerance.

The fit has K unknowns (a coefficient per task update; the temperature is solved exactly inside
each evaluation), and each evaluation is one forward/backward pass over the fitting batch, so the
number of evaluations is the cost; every row of `weights.parquet` reports it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.func import functional_call
from torch.nn import functional as F

from auxsel.errors import AuxselError
from auxsel.methods.flat import FlatParams
from auxsel.train import autocast, upcast


class ShareObjective:
    """min_β L_target(dev batch, θ + Σ_k c_k·D_k, logits·β) as a function of c = (c_1..c_K).

    D_k is task k's trunk update rescaled to the target update's trunk norm, so c_k compares
    directions, not step lengths (a task with larger gradients or more steps does not get a
    smaller coefficient for that reason alone). Every head takes its own full update, as in
    `heads="own"`. β = 1/τ is a logit temperature: it absorbs the part of the dev-loss change
    that any update can buy by changing confidence alone (cause 5 in docs/methods.md), so c is
    left to pay for changes of what the model predicts."""

    def __init__(self, model, flat: FlatParams, theta: torch.Tensor, deltas: torch.Tensor,
                 batch: dict[str, torch.Tensor], labels: torch.Tensor, target: str, temperature: bool,
                 amp: bool = False, fixed_temperature: bool = False,
                 class_weight: torch.Tensor | None = None) -> None:
        self.model, self.flat, self.theta, self.amp = model, flat, theta, amp
        self.class_weight = class_weight  # None: plain mean cross-entropy; else per-class weights (`balanced_weights`)
        self.fixed_temperature = fixed_temperature  # β solved at the first evaluation only, then held
        self.batch, self.labels, self.target, self.temperature = batch, labels, target, temperature
        self.beta = 1.0
        self.solved = False
        self.raw_start: float | None = None  # the untempered loss at the first evaluation (the fit's start)
        self.last: tuple[torch.Tensor, torch.Tensor] | None = None  # (c, untempered logits) of the latest evaluation
        s = flat.shared
        self.trunk = deltas[:, :s]
        norms = self.trunk.norm(dim=1)
        ref = norms[0] if norms[0] > 0 else norms.max()
        self.scale = torch.where(norms > 0, ref / norms.clamp_min(1e-30), torch.zeros_like(norms))
        self.tail = theta[s:] + deltas[:, s:].sum(0)

    def params(self, c: torch.Tensor) -> torch.Tensor:
        s = self.flat.shared
        return torch.cat([self.theta[:s] + (c * self.scale) @ self.trunk, self.tail])

    def whitening(self) -> torch.Tensor:
        """M with c = M·b such that Σ_k c_k D_k = Σ_j b_j Q_j, Q orthogonal with the target
        update's norm: the solver then works in coordinates where no two directions overlap (an
        auxiliary update that mostly repeats the target's no longer makes a narrow valley)."""
        d = self.trunk.double() * self.scale.double()[:, None]
        gram = d @ d.T
        ref = float(gram.diagonal().max().clamp_min(1e-300).sqrt())
        jitter = 1e-10 * float(gram.diagonal().sum()) + 1e-300
        chol = torch.linalg.cholesky(gram + jitter * torch.eye(len(gram), dtype=gram.dtype, device=gram.device))
        m = ref * torch.linalg.inv(chol).T  # c = ref·L^-T b
        return m.to(self.trunk.dtype)

    def __call__(self, c: torch.Tensor) -> torch.Tensor:
        params = self.flat.as_dict(self.params(c))
        with autocast(self.theta.device, self.amp):
            logits = upcast(functional_call(self.model, params, (self.batch, self.target)))
        self.last = (c.detach().clone(), logits.detach())
        if self.raw_start is None:
            self.raw_start = float(F.cross_entropy(logits.detach(), self.labels, weight=self.class_weight))
        if self.temperature:
            # the temperature is profiled out: for these logits, the inverse temperature β that
            # minimises the loss (a 1-D convex problem, no network pass); by the envelope theorem
            # the gradient in c at β*(c) is the gradient of the profiled loss
            if not (self.fixed_temperature and self.solved):
                self.beta = inverse_temperature(logits.detach(), self.labels, self.class_weight)
                self.solved = True
            logits = logits * self.beta
        return F.cross_entropy(logits, self.labels, weight=self.class_weight)

    @torch.no_grad()
    def raw_loss_at(self, c: torch.Tensor) -> float:
        """raw_loss at the coefficients c, read off the latest evaluation's logits when it was at c
        (the fit usually ends on the point it returns, which is then merged as fitted)."""
        if self.last is not None and torch.equal(self.last[0], c):
            return float(F.cross_entropy(self.last[1], self.labels, weight=self.class_weight))
        return self.raw_loss(self.params(c))

    @torch.no_grad()
    def raw_loss(self, params: torch.Tensor) -> float:
        """The untempered fitting loss at flat parameters `params` (one forward pass): what the
        model that training continues from actually scores."""
        return float(F.cross_entropy(self.logits(params), self.labels, weight=self.class_weight))

    @torch.no_grad()
    def logits(self, params: torch.Tensor) -> torch.Tensor:
        with autocast(self.theta.device, self.amp):
            return upcast(functional_call(self.model, self.flat.as_dict(params), (self.batch, self.target)))

    @torch.no_grad()
    def folded_at(self, c: torch.Tensor) -> tuple[torch.Tensor, float, float]:
        """The parameters at c with the temperature folded into the target's head (its Linear's
        weight and bias times β, so the model's logits are β·logits: the tempered model the fit
        scores, as a model), their fitting loss, and β. β is solved for c's own logits (read off the
        latest evaluation when it was at c), or the held one under `fixed_temperature`; 1 without
        a temperature."""
        params = self.params(c)
        logits = self.last[1] if self.last is not None and torch.equal(self.last[0], c) else self.logits(params)
        if not self.temperature:
            beta = 1.0
        elif self.fixed_temperature and self.solved:
            beta = self.beta
        else:
            beta = inverse_temperature(logits, self.labels, self.class_weight)
        lo, hi = self.flat.head_range[self.target]
        params[lo:hi] *= beta
        return params, float(F.cross_entropy(logits * beta, self.labels, weight=self.class_weight)), beta


def balanced_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-class weights 1/n_c for the classes present in `labels` (0 for absent ones), so that
    F.cross_entropy(weight=...) is the mean over classes of each class's mean cross-entropy: the
    loss a macro-averaged metric cares about. On an imbalanced fitting batch the plain mean is
    decided by the majority class; a macro-F1 target is decided as much by the minority."""
    counts = torch.bincount(labels, minlength=num_classes).to(torch.float32)
    return torch.where(counts > 0, 1.0 / counts.clamp_min(1.0), torch.zeros_like(counts)).to(labels.device)


@torch.no_grad()
def inverse_temperature(logits: torch.Tensor, labels: torch.Tensor, class_weight: torch.Tensor | None = None,
                        tol: float = 1e-10, steps: int = 50) -> float:
    """argmin_β>0 CE(β·logits, labels) (class-weighted as F.cross_entropy's `weight` when given) by
    safeguarded Newton (CE(βz) is convex in β)."""
    z = logits.double()
    zy = z.gather(1, labels[:, None]).squeeze(1)
    if class_weight is None:
        w = torch.full_like(zy, 1.0 / len(zy))
    else:
        w = class_weight.double()[labels]
        w = w / w.sum()
    beta = 1.0
    for _ in range(steps):
        p = torch.softmax(beta * z, dim=1)
        mean = (p * z).sum(1)
        grad = float((w * (mean - zy)).sum())
        hess = float((w * ((p * z * z).sum(1) - mean * mean)).sum())
        if hess <= 0:
            break
        new = beta - grad / hess
        new = new if new > 0 else beta / 4
        if abs(new - beta) <= tol * max(beta, 1.0):
            beta = new
            break
        beta = new
    return float(min(max(beta, 1e-3), 1e3))


def minimise(fn, v0: torch.Tensor, tol: float, max_evals: int, ftol: float = 0.0,
             rtol: float = 0.0) -> dict[str, Any]:
    """Minimise fn(v) of a few variables with L-BFGS (strong-Wolfe line search) until the largest
    gradient entry is ≤ tol ("gradient"), an iteration lowers fn by less than ftol ("value"), or
    `max_evals` evaluations are spent ("budget").

    The value test is there for piecewise-smooth objectives (ReLU, max-pool): at a minimum on a
    kink the one-sided gradients do not vanish, and L-BFGS would spend its whole budget on line
    searches that cannot lower fn any more. Returns v, the loss and gradient at v, iterations,
    evaluations, the stop reason and whether it is "gradient" or "value" (`converged`). The
    gradient reported is the one evaluated at the returned point (never a stale one).

    rtol > 0 adds a stop relative to the fit's own progress: "value" once an iteration lowers fn by
    less than rtol × what the fit has gained since its start. A tolerance in nats is a scale — loose
    for fits that gain a lot, and for fits that gain little it stops them before they start; a
    relative one cannot stop the first iteration (it is the whole gain so far)."""
    if rtol > 0:
        return _minimise_relative(fn, v0, tol, max_evals, ftol, rtol)
    v = v0.detach().clone().requires_grad_(True)
    seen: list[tuple[torch.Tensor, float, torch.Tensor]] = []

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = fn(v)
        loss.backward()
        seen.append((v.detach().clone(), float(loss.detach()), v.grad.detach().clone()))
        return loss

    restarts = iters_total = 0
    stop = "budget"
    while True:
        left = max_evals - len(seen)
        opt = torch.optim.LBFGS([v], lr=1.0, max_iter=left, max_eval=left, history_size=20,
                                line_search_fn="strong_wolfe", tolerance_grad=tol, tolerance_change=ftol)
        before = seen[-1][1] if seen else math.inf
        opt.step(closure)
        state = opt.state[opt._params[0]]
        iters_total += int(state.get("n_iter", 0))
        here = [r for r in seen if torch.equal(r[0], v.detach())]
        if here and float(here[-1][2].abs().max()) <= tol:
            stop = "gradient"
            break
        if len(seen) >= max_evals:
            break
        last_gain = float(state.get("prev_loss", math.inf)) - (here[-1][1] if here else math.inf)
        if ftol > 0 and 0 <= last_gain < ftol:
            stop = "value"
            break
        # L-BFGS stops early when its direction stops descending (a kink of ReLU/max-pool, or a
        # curvature pair gone stale); restarting from here with a fresh history is steepest descent
        if restarts >= 5 or not min(r[1] for r in seen) < before:
            stop = "value" if ftol > 0 else "stalled"
            break
        restarts += 1
    return _result(v, seen, closure, tol, iters_total, restarts, stop)


def _result(v: torch.Tensor, seen: list, closure, tol: float, iters: int, restarts: int, stop: str) -> dict[str, Any]:
    final = v.detach().clone()
    match = [r for r in seen if torch.equal(r[0], final)]
    if match:
        loss, grad = match[-1][1], match[-1][2]
        evals = len(seen)
    else:  # the line search ended between evaluations: evaluate the returned point once more
        closure()
        loss, grad = seen[-1][1], seen[-1][2]
        evals = len(seen)
    if not (torch.isfinite(final).all() and math.isfinite(loss)):
        raise AuxselError(f"αVIL: the share fit diverged (v = {final.tolist()})")
    if float(grad.abs().max()) <= tol:
        stop = "gradient"
    return {"v": final, "loss": loss, "grad": grad, "iters": iters, "evals": evals, "restarts": restarts,
            "grad_max": float(grad.abs().max()), "stop": stop, "converged": stop in ("gradient", "value")}


def _minimise_relative(fn, v0: torch.Tensor, tol: float, max_evals: int, ftol: float, rtol: float) -> dict[str, Any]:
    """L-BFGS one iteration per `step` call, so the stop can be tested after every iteration; its
    curvature history carries over between calls, and the evaluation each call opens with is served
    from the one the line search already made at that point (no evaluation is spent twice)."""
    v = v0.detach().clone().requires_grad_(True)
    seen: list[tuple[torch.Tensor, float, torch.Tensor]] = []

    def at(point: torch.Tensor):
        return next((r for r in reversed(seen) if torch.equal(r[0], point)), None)

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        hit = at(v.detach())
        if hit is not None:
            v.grad = hit[2].clone()
            return torch.tensor(hit[1], dtype=v.dtype)
        loss = fn(v)
        loss.backward()
        seen.append((v.detach().clone(), float(loss.detach()), v.grad.detach().clone()))
        return loss

    def fresh() -> torch.optim.LBFGS:
        return torch.optim.LBFGS([v], lr=1.0, max_iter=1, max_eval=max_evals, history_size=20,
                                 line_search_fn="strong_wolfe", tolerance_grad=tol, tolerance_change=ftol)

    opt = fresh()
    restarts = iters = 0
    stop = "budget"
    start = None
    while len(seen) < max_evals:
        here = at(v.detach())
        left = max_evals - len(seen)
        if here is None and left < 2:  # room for the opening evaluation only
            closure()
            break
        # the line search may spend one evaluation past its max_ls (= max_eval - 1 here)
        opt.param_groups[0]["max_eval"] = left if here is not None else left - 1
        before = here[1] if here is not None else None
        point = v.detach().clone()
        opt.step(closure)
        if start is None:
            start = seen[0][1]
            before = start if before is None else before
        now = at(v.detach())
        if now is None:  # the line search ended between evaluations
            closure()
            now = seen[-1]
        if float(now[2].abs().max()) <= tol:
            stop = "gradient"
            break
        if torch.equal(point, v.detach()) or not now[1] < before:
            # no descent along L-BFGS's direction (a kink, or a stale curvature pair): restart
            # from here with a fresh history, i.e. steepest descent, as the default path does
            if len(seen) >= max_evals:
                break
            if restarts >= 5:
                stop = "value"
                break
            restarts += 1
            opt = fresh()
            continue
        iters += 1
        gain = before - now[1]
        if gain < max(ftol, rtol * (start - now[1])):
            stop = "value"
            break
    return _result(v, seen, closure, tol, iters, restarts, stop)
