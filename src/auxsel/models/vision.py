"""LeNet-style shared trunk (the usual multitask-learning trunk), sized by the prepared images."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class LeNetTrunk(nn.Module):
    """conv(1->c1, 5x5) -> maxpool 2 -> relu -> conv(c1->c2, 5x5) -> maxpool 2 -> relu -> fc(hidden) -> relu.

    Input: {"image": uint8 [B, H, W] or [B, H, W, 3]} (`input_shape` [H, W] or [H, W, 3], from
    the prepared data; the default pool's canvases are 36x36), scaled to [0, 1] and, with
    `normalize`, standardised with MNIST's pixel mean and std (0.1307, 0.3081): that shortens the
    near-chance plateau LeNet sits on for the first epochs of MultiMNIST. The flatten size is
    computed from H and W. Output: [B, hidden].
    """

    MEAN, STD = 0.1307, 0.3081

    def __init__(self, hidden: int = 50, channels: tuple[int, int] = (10, 20), input_shape: tuple[int, ...] = (36, 36),
                 normalize: bool = True) -> None:
        super().__init__()
        self.normalize = normalize
        self.input_shape = tuple(int(d) for d in input_shape)
        height, width = self.input_shape[:2]
        in_channels = self.input_shape[2] if len(self.input_shape) == 3 else 1
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
            x = (x - self.MEAN) / self.STD
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        return F.relu(self.fc(x.flatten(1)))
