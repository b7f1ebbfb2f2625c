"""LeNet-style shared trunk (the usual multitask-learning trunk), sized by the prepared images."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class LeNetTrunk(nn.Module):
    """conv(1->c1, 5x5) -> maxpool 2 -> relu -> conv(c1->c2, 5x5) -> maxpool 2 -> relu -> fc(hidden) -> relu.

    Input: {"image": uint8 [B, H, W] or [B, H, W, 3]} (`input_shape` [H, W] or [H, W, 3], from
    the prepared data; the default pool's canvases are 36x36), scaled to [0, 1] and standardised
    per channel with `mean` and `std` when given: MNIST's pixel mean and std (0.1307, 0.3081) for
    the default pool, whose near-chance plateau in the first epochs of MultiMNIST they shorten, or
    the target's own training-split statistics (params `model.normalize: target`). The flatten
    size is computed from H and W. Output: [B, hidden].
    """

    MNIST = ((0.1307,), (0.3081,))

    def __init__(self, hidden: int = 50, channels: tuple[int, int] = (10, 20), input_shape: tuple[int, ...] = (36, 36),
                 mean: tuple[float, ...] | None = MNIST[0], std: tuple[float, ...] | None = MNIST[1]) -> None:
        super().__init__()
        self.input_shape = tuple(int(d) for d in input_shape)
        height, width = self.input_shape[:2]
        in_channels = self.input_shape[2] if len(self.input_shape) == 3 else 1
        self.normalize = mean is not None
        if self.normalize:  # one value for all channels, or one per channel
            # float64, cast to the input's dtype in forward: exactly what `x - 0.1307` with a Python
            # float gives in float32 and in float64 models alike
            mean_t, std_t = torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)
            if mean_t.numel() not in (1, in_channels) or std_t.shape != mean_t.shape or bool((std_t <= 0).any()):
                from auxsel.errors import AuxselError

                raise AuxselError(f"pixel statistics mean {list(mean)} / std {list(std)} do not fit {in_channels}-channel images")
            self.register_buffer("pixel_mean", mean_t.view(1, -1, 1, 1), persistent=False)
            self.register_buffer("pixel_std", std_t.view(1, -1, 1, 1), persistent=False)
        self.conv1 = nn.Conv2d(in_channels, channels[0], 5)
        self.conv2 = nn.Conv2d(channels[0], channels[1], 5)
        side = lambda n: ((n - 4) // 2 - 4) // 2  # noqa: E731 - two (conv 5, pool 2) stages
        self.fc = nn.Linear(channels[1] * side(height) * side(width), hidden)
        self.out_dim = hidden

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = batch["image"]
        if tuple(x.shape[1:]) != self.input_shape:
            from auxsel.errors import AuxselError

            raise AuxselError(f"images of shape {list(x.shape[1:])} for a trunk built for {list(self.input_shape)}")
        x = x.to(self.conv1.weight.dtype).div(255.0)
        x = x.permute(0, 3, 1, 2) if x.ndim == 4 else x.unsqueeze(1)
        if self.normalize:
            x = (x - self.pixel_mean.to(x.dtype)) / self.pixel_std.to(x.dtype)
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        return F.relu(self.fc(x.flatten(1)))


class _Block(nn.Module):
    """A basic residual block: conv3x3 -> norm -> relu -> conv3x3 -> norm, plus the input (a 1x1
    conv when the width or stride changes), then relu."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = _norm(c_out)
        self.skip = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), _norm(c_out))
                     if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(y)) + self.skip(x))


def _norm(channels: int) -> nn.GroupNorm:
    # GroupNorm, not BatchNorm: no running statistics, so a task's update, αVIL's merge of the
    # task deltas and evaluation all see the same function of the parameters (BatchNorm's buffers
    # would be updated by whichever task trained last), and results do not depend on batch size
    return nn.GroupNorm(min(8, channels), channels)


class ResNetTrunk(nn.Module):
    """A small ResNet for real images (32x32 RGB and larger): a 3x3 stem at `widths[0]`, then one
    stage per entry of `widths` with `blocks` residual blocks each (every stage after the first
    halves the resolution), global average pooling. Pixels are scaled and standardised as in
    LeNetTrunk. Input {"image": uint8 [B, H, W] or [B, H, W, 3]}; output [B, widths[-1]].
    """

    def __init__(self, input_shape: tuple[int, ...], widths: tuple[int, ...] = (16, 32, 64, 128), blocks: int = 1,
                 mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None) -> None:
        super().__init__()
        self.input_shape = tuple(int(d) for d in input_shape)
        in_channels = self.input_shape[2] if len(self.input_shape) == 3 else 1
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False), _norm(widths[0]), nn.ReLU())
        layers, c = [], widths[0]
        for i, w in enumerate(widths):
            for b in range(blocks):
                layers.append(_Block(c, w, stride=2 if i > 0 and b == 0 else 1))
                c = w
        self.stages = nn.Sequential(*layers)
        self.out_dim = c
        self.normalize = mean is not None
        if self.normalize:
            self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1), persistent=False)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = batch["image"]
        if tuple(x.shape[1:]) != self.input_shape:
            from auxsel.errors import AuxselError

            raise AuxselError(f"images of shape {list(x.shape[1:])} for a trunk built for {list(self.input_shape)}")
        x = x.to(self.stem[0].weight.dtype).div(255.0)
        x = x.permute(0, 3, 1, 2) if x.ndim == 4 else x.unsqueeze(1)
        if self.normalize:
            x = (x - self.pixel_mean.to(x.dtype)) / self.pixel_std.to(x.dtype)
        return self.stages(self.stem(x)).mean(dim=(2, 3))
