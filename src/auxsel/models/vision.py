"""LeNet-style shared trunk for 36x36 MultiMNIST canvases (the usual multitask-learning trunk)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class LeNetTrunk(nn.Module):
    """conv(1->c1, 5x5) -> maxpool 2 -> relu -> conv(c1->c2, 5x5) -> maxpool 2 -> relu -> fc(hidden) -> relu.

    Input: {"image": uint8 [B, 36, 36]}, scaled to [0, 1] and, with `normalize`, standardised with
    MNIST's pixel mean and std (0.1307, 0.3081): that shortens the near-chance plateau LeNet sits on
    for the first epochs of MultiMNIST. Output: [B, hidden].
    """

    MEAN, STD = 0.1307, 0.3081

    def __init__(self, hidden: int = 50, channels: tuple[int, int] = (10, 20), size: int = 36,
                 normalize: bool = True) -> None:
        super().__init__()
        self.normalize = normalize
        self.conv1 = nn.Conv2d(1, channels[0], 5)
        self.conv2 = nn.Conv2d(channels[0], channels[1], 5)
        side = ((size - 4) // 2 - 4) // 2
        self.fc = nn.Linear(channels[1] * side * side, hidden)
        self.out_dim = hidden

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = batch["image"]
        x = x.to(self.conv1.weight.dtype).div(255.0).unsqueeze(1)
        if self.normalize:
            x = (x - self.MEAN) / self.STD
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        return F.relu(self.fc(x.flatten(1)))
