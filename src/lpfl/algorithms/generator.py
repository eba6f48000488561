"""Label-conditioned generators for the data-free methods, and their diversity loss.

FedGen generates features (what enters a model's classifier); FedFTG generates inputs.
Both take their noise from the caller, so the caller's seeded generator decides every
draw and the diversity loss can compare noise with output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FeatureGenerator(nn.Module):
    """FedGen's generator: (noise, one-hot label) -> MLP -> a feature vector.

    One hidden layer with BatchNorm and ReLU, then a linear map to the feature width,
    as in Zhu et al. (2021) and the reference.
    """

    def __init__(
        self, num_classes: int, feature_dim: int, noise_dim: int = 32, hidden_dim: int = 32
    ) -> None:
        super().__init__()
        self.num_classes, self.noise_dim = num_classes, noise_dim
        self.net = nn.Sequential(
            nn.Linear(noise_dim + num_classes, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, feature_dim),
        )

    def forward(self, labels: Tensor, noise: Tensor) -> Tensor:
        # F.one_hot's values, without its range check, which reads the labels on the host
        # on a CPU: clients run this inside their step, which may be a CUDA graph.
        classes = torch.arange(self.num_classes, device=labels.device)
        onehot = (labels.unsqueeze(1) == classes).to(noise.dtype)
        return self.net(torch.cat([noise, onehot], dim=1))


class ImageGenerator(nn.Module):
    """FedFTG's conditional generator: (noise, one-hot label) -> an input image.

    The usual data-free-distillation generator: a linear map to a (size/4)² grid, two
    upsample + conv stages, and a final BatchNorm without affine parameters, so the
    images come out roughly standardised, like the normalised inputs the models see.
    """

    def __init__(
        self, num_classes: int, channels: int, size: int, noise_dim: int = 128, width: int = 64
    ) -> None:
        super().__init__()
        if size % 4:
            raise ValueError(f"image size must be a multiple of 4, got {size}")
        self.num_classes, self.noise_dim = num_classes, noise_dim
        self.width, self.grid = 2 * width, size // 4
        self.project = nn.Linear(noise_dim + num_classes, self.width * self.grid**2)
        self.net = nn.Sequential(
            nn.BatchNorm2d(self.width),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(self.width, self.width, 3, padding=1),
            nn.BatchNorm2d(self.width),
            nn.LeakyReLU(0.2),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(self.width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, channels, 3, padding=1),
            nn.Tanh(),
            nn.BatchNorm2d(channels, affine=False),
        )

    def forward(self, labels: Tensor, noise: Tensor) -> Tensor:
        onehot = F.one_hot(labels, self.num_classes).to(noise.dtype)
        h = self.project(torch.cat([noise, onehot], dim=1))
        return self.net(h.view(-1, self.width, self.grid, self.grid))


def diversity_loss(noise: Tensor, output: Tensor) -> Tensor:
    """exp(-mean_ij d(noise_i, noise_j)·d(out_i, out_j)): small when distinct noise gives
    distinct outputs, which keeps a generator from collapsing onto one sample per label
    (Mao et al., 2019; used by FedGen and FedFTG). Squared distance between noises, L1
    between outputs, each averaged over coordinates."""
    out = output.flatten(1)
    noise_dist = (noise[:, None] - noise[None]).pow(2).mean(-1)
    out_dist = (out[:, None] - out[None]).abs().mean(-1)
    return torch.exp(-(noise_dist * out_dist).mean())
