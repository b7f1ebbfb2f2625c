"""Flat views of a multi-task model's trainable parameters: [shared..., head_1..., head_2...].

αVIL and DIW hold task updates / gradients as K x P float buffers (P = trainable parameter
count); nothing larger. `merged_params` turns a flat vector into the {name: tensor} dict that
`torch.func.functional_call` takes, so the dev loss is differentiable in the mixing coefficients.
"""

from __future__ import annotations

import torch


class FlatParams:
    def __init__(self, model) -> None:
        self.model = model
        self.names, self.params = [], []
        for name, p in model.named_parameters():
            if p.requires_grad:
                self.names.append(name)
                self.params.append(p)
        self.shapes = [p.shape for p in self.params]
        self.sizes = [p.numel() for p in self.params]
        self.size = sum(self.sizes)
        # contiguous ranges: shared trunk first, then each task's head
        self.shared = sum(n for name, n in zip(self.names, self.sizes) if not name.startswith("heads."))
        self.head_range: dict[str, tuple[int, int]] = {}
        offset = 0
        for name, n in zip(self.names, self.sizes):
            if name.startswith("heads."):
                task = name.split(".")[1]
                lo, hi = self.head_range.get(task, (offset, offset))
                self.head_range[task] = (lo, offset + n)
            elif self.head_range:
                raise ValueError("trunk parameters must come before head parameters")
            offset += n

    def get(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.params])

    @torch.no_grad()
    def set(self, flat: torch.Tensor) -> None:
        offset = 0
        for p, n in zip(self.params, self.sizes):
            p.copy_(flat[offset : offset + n].view_as(p))
            offset += n

    def grad(self) -> torch.Tensor:
        return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in self.params])

    def as_dict(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: t.view(shape) for name, t, shape in zip(self.names, flat.split(self.sizes), self.shapes)}
