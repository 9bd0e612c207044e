"""The network: :class:`DiscAutoencoder` (``book/method.md``, *Autoencoder*).

Input: one binary disc cube ``(S, S, S)`` in the canonical anatomical order of
:mod:`disclatent.discs.isolation` (numpy axes SI, AP, LR). Encoder: ``n`` stride-2 3-D
convolutions (kernel 3) each followed by normalisation and ReLU; a *linear* bottleneck of
size ``k`` (no activation on the latent vector); decoder: a linear layer back to the coarsest
grid, then ``n`` stride-2 3-D transposed convolutions with normalisation and ReLU, the last
one giving one channel of logits (``in_channels``/``out_channels`` > 1: the intensity-aware
model of :mod:`disclatent.autoencoder.composition`). No skip connections. With 64^3 inputs and channels
32-64-128-256-512 (the ``paper`` profile) the model has 9,438,789 parameters at k = 4
(:func:`count_parameters`), the paper's "about 9.4 M".

Two choices differ between the paper and the laptop profiles (``book/method.md``,
*Autoencoder*; measured in ``benchmarks/bench_autoencoder.py``):

* ``norm``: ``"batch"`` (the paper) or ``"group"`` (GroupNorm, up to 8 groups; no batch
  noise and no statistics to re-estimate, so the eval-mode network is the trained one);
* ``decoder_kernel``: 3 (the paper: kernel 3, stride 2, output padding 1, where every second
  output voxel sees a single input voxel per axis) or 4 (kernel 4, stride 2, padding 1: every
  output voxel sees two input voxels per axis).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import cast

import torch
from torch import nn

from disclatent.accel import resolve_device
from disclatent.autoencoder.config import DECODER_KERNELS, NORMS, AEConfig


def norm_layer(kind: str, channels: int) -> nn.Module:
    """Batch normalisation (``"batch"``) or GroupNorm with up to 8 groups (``"group"``)."""
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    raise ValueError(f"unknown norm {kind!r}; choose one of {', '.join(NORMS)}")


def upsampling(c_in: int, c_out: int, kernel: int, bias: bool) -> nn.ConvTranspose3d:
    """A stride-2 transposed convolution that doubles each axis (kernel 3 or 4)."""
    if kernel == 3:
        return nn.ConvTranspose3d(c_in, c_out, 3, stride=2, padding=1, output_padding=1, bias=bias)
    if kernel == 4:
        return nn.ConvTranspose3d(c_in, c_out, 4, stride=2, padding=1, bias=bias)
    raise ValueError(f"decoder kernel must be one of {DECODER_KERNELS}, got {kernel}")


class DiscAutoencoder(nn.Module):
    """Strided 3-D conv encoder, linear bottleneck, transposed-conv decoder; logits out."""

    def __init__(
        self,
        size: int = 64,
        channels: Sequence[int] = (32, 64, 128, 256, 512),
        latent_dim: int = 4,
        norm: str = "batch",
        decoder_kernel: int = 3,
        in_channels: int = 1,
        out_channels: int = 1,
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        n = len(channels)
        if size % 2**n:
            raise ValueError(f"size {size} not divisible by 2^{n}")
        self.size, self.channels, self.latent_dim = size, channels, latent_dim
        self.bottom = size // 2**n
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        enc: list[nn.Module] = []
        c_in = self.in_channels
        for c in channels:
            enc += [
                nn.Conv3d(c_in, c, 3, stride=2, padding=1, bias=False),
                norm_layer(norm, c),
                nn.ReLU(inplace=True),
            ]
            c_in = c
        self.encoder = nn.Sequential(*enc)
        flat = channels[-1] * self.bottom**3
        self.to_latent = nn.Linear(flat, latent_dim)  # linear bottleneck: no activation
        self.from_latent = nn.Linear(latent_dim, flat, bias=False)
        dec: list[nn.Module] = [norm_layer(norm, channels[-1]), nn.ReLU(inplace=True)]
        rev = channels[::-1]
        for c_a, c_b in zip(rev[:-1], rev[1:], strict=True):
            dec += [
                upsampling(c_a, c_b, decoder_kernel, bias=False),
                norm_layer(norm, c_b),
                nn.ReLU(inplace=True),
            ]
        dec.append(upsampling(channels[0], self.out_channels, decoder_kernel, bias=True))
        self.decoder = nn.Sequential(*dec)

    @property
    def output_layer(self) -> nn.ConvTranspose3d:
        """The last transposed convolution (its bias sets the logits' starting level)."""
        layer = self.decoder[-1]
        assert isinstance(layer, nn.ConvTranspose3d)
        return layer

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(n, C_in, S, S, S) float -> (n, k)."""
        return self.to_latent(torch.flatten(self.encoder(x), 1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(n, k) -> (n, C_out, S, S, S) (logits for the shape model's one channel)."""
        h = self.from_latent(z).view(-1, self.channels[-1], self.bottom, self.bottom, self.bottom)
        return self.decoder(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The batch-norm layers of ``model`` (none with GroupNorm)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """Replace the running batch-norm statistics by their average over ``batches`` (all
    training discs, in batches of the training size: "precise BN"), so that the eval-mode
    model is a fixed function of the weights, not of the last few noisy batches. Leaves the
    model in eval mode."""
    bns = batch_norms(model)
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    for x in batches:
        model(x)
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom
    model.eval()


def count_parameters(model: nn.Module) -> int:
    """Number of trainable and frozen parameters (batch-norm statistics not counted)."""
    return sum(p.numel() for p in model.parameters())


def build_model(cfg: AEConfig) -> DiscAutoencoder:
    """The (untrained) network of a configuration."""
    return DiscAutoencoder(cfg.size, cfg.channels, cfg.latent_dim, cfg.norm, cfg.decoder_kernel)


def default_device() -> torch.device:
    """CUDA when present, else the CPU (:func:`disclatent.accel.resolve_device` without
    Apple's MPS, which lacks some 3-D operations the autoencoder uses)."""
    return resolve_device("auto", mps=False)


def to_channels_last(module: nn.Module) -> None:
    """``module.to(memory_format=torch.channels_last_3d)``: 5-D weights channels-last.

    (``Module.to`` accepts ``memory_format``; torch's type stubs do not say so.)
    """
    to = cast(Callable[..., nn.Module], module.to)
    to(memory_format=torch.channels_last_3d)
