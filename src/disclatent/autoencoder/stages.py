"""The stages of training: ``"joint"`` (the paper: encoder and decoder together) or, with
``AEConfig.strategy = "decoder_first"``, ``"decoder"`` then ``"encoder"`` (``book/method.md``,
*Autoencoder*). Each stage has its optimiser (:func:`stage_optimizer`), its loss
(:func:`stage_loss`) and its schedule (:func:`stage_schedule`).

**Decoder-first training.**

Joint training of a small-bottleneck autoencoder spends most of its epochs with an encoder
that does not yet separate the discs and a decoder that does not yet draw them; each waits for
the other. Decoder-first training removes the wait:

1. **The decoder, as an auto-decoder** (DeepSDF's idea, Park et al. 2019): every training disc
   gets a free code of ``k`` numbers (start: :func:`initial_codes`, the discs' PCA scores by
   default), and the codes are optimised together with the decoder under the reconstruction
   loss (:func:`decoder_step`). Its quality is the IoU of the decoded codes, recorded for
   every disc from the forward pass that trained it (free: with GroupNorm the train-mode
   network is the eval-mode one; it lags a little, each disc measured before its own update
   and under the weights of its point in the epoch). With latent noise those passes decode
   perturbed codes, so an eval pass of the clean codes (:func:`decoder_iou`) after the epoch
   measures it instead. The stage ends when its mean reaches the criterion plus
   ``decoder_margin`` or at the epoch budget.
2. **The encoder regresses the codes** (:func:`encoder_step`, mean squared error, the
   decoder fixed). After every epoch the *composed* autoencoder (encoder, then decoder) is
   measured with the same criterion as joint training: mean IoU over all training discs,
   eval mode. The model has converged when that reaches 0.995.

The result is an ordinary :class:`~disclatent.autoencoder.network.DiscAutoencoder`:
encoding, decoding, held-out evaluation and everything downstream are unchanged. The network
must use GroupNorm (no batch statistics that would differ between the two stages).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from disclatent.autoencoder.config import CODE_INITS, AEConfig
from disclatent.autoencoder.network import DiscAutoencoder
from disclatent.autoencoder.objective import iou_per_disc, reconstruction_loss

STAGES = ("joint", "decoder", "encoder")
CODES_KEY = "codes"  # the tensor name of the auto-decoder's codes in a checkpoint


def initial_codes(
    cubes: np.ndarray, latent_dim: int, seed: int, method: str = "pca"
) -> nn.Embedding:
    """One code per training disc (n, k) to start the decoder stage from.

    ``"pca"``: the discs' scores on the first k principal components of their flattened
    masks, each scaled to unit variance, so that similar discs start with similar codes and
    the decoder learns a smooth map that the encoder can follow to unseen discs (components
    beyond the n - 1 that PCA has start at zero). ``"random"``: N(0, 1), seeded.
    """
    n = len(cubes)
    if method == "random":
        g = torch.Generator().manual_seed(seed * 7919 + 17)
        start = torch.randn(n, latent_dim, generator=g)
    elif method == "pca":
        from sklearn.decomposition import PCA

        x = np.asarray(cubes, np.float32).reshape(n, -1)
        m = int(min(latent_dim, max(n - 1, 1)))
        scores = PCA(n_components=m, svd_solver="randomized", random_state=seed).fit_transform(x)
        scores = scores / np.maximum(scores.std(axis=0, keepdims=True), 1e-6)
        start = torch.zeros(n, latent_dim)
        start[:, :m] = torch.as_tensor(scores, dtype=torch.float32)
    else:
        raise ValueError(f"unknown code initialisation {method!r}; one of {', '.join(CODE_INITS)}")
    codes = nn.Embedding(n, latent_dim)
    with torch.no_grad():
        codes.weight.copy_(start)
    return codes


def decoder_parameters(model: DiscAutoencoder) -> list[nn.Parameter]:
    """The parameters of the decoder half (the linear layer from the code, then the decoder)."""
    return [*model.from_latent.parameters(), *model.decoder.parameters()]


def encoder_parameters(model: DiscAutoencoder) -> list[nn.Parameter]:
    """The parameters of the encoder half (the convolutions, then the linear bottleneck)."""
    return [*model.encoder.parameters(), *model.to_latent.parameters()]


def stage_optimizer(
    model: DiscAutoencoder, codes: nn.Embedding | None, stage: str, cfg: AEConfig
) -> torch.optim.Optimizer:
    """Adam over what ``stage`` trains: everything, decoder and codes, or the encoder; the
    fused implementation (one kernel for all parameters: on this CPU a decoder step took
    6.8 ms against 7.6 ms with the default)."""
    if stage == "joint":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True)
    if stage == "decoder":
        assert codes is not None
        groups = [
            {"params": decoder_parameters(model), "lr": cfg.lr, "lr_scale": 1.0},
            {"params": list(codes.parameters()), "lr": cfg.lr, "lr_scale": cfg.code_lr_scale},
        ]
        return torch.optim.Adam(groups, lr=cfg.lr, fused=True)
    if stage == "encoder":
        return torch.optim.Adam(encoder_parameters(model), lr=cfg.encoder_lr, fused=True)
    raise ValueError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")


def stage_schedule(
    cfg: AEConfig, stage: str, epoch: int, decoder_epochs: int
) -> tuple[int, int, int, float, str]:
    """Batch size, epoch within the stage, the stage's epoch budget, base learning rate and
    schedule of global epoch ``epoch`` (0-based) in ``stage``."""
    if stage == "encoder":
        e = epoch - decoder_epochs
        return cfg.encoder_batch_size, e, cfg.encoder_epochs, cfg.encoder_lr, "cosine"
    return cfg.batch_size, epoch, cfg.max_epochs, cfg.lr, cfg.schedule


def stage_loss(
    model: DiscAutoencoder,
    codes: nn.Embedding | None,
    stage: str,
    x: torch.Tensor,
    idx: torch.Tensor,
    cfg: AEConfig,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The loss of one batch ``x`` (n, 1, S, S, S) float, the discs ``idx``, in ``stage``,
    and the logits it was computed from (``None`` in the encoder stage); ``generator`` draws
    the decoder stage's latent noise (``cfg.code_noise``)."""
    if stage == "joint":
        logits = model(x)
        return reconstruction_loss(logits, x, cfg.loss, cfg.bce_weight, cfg.hard_weight), logits
    assert codes is not None
    if stage == "decoder":
        return decoder_step(model, codes, x, idx, cfg, generator)
    return encoder_step(model, x, codes.weight.detach()[idx.to(codes.weight.device)]), None


def decoder_step(
    model: DiscAutoencoder,
    codes: nn.Embedding,
    x: torch.Tensor,
    idx: torch.Tensor,
    cfg: AEConfig,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reconstruction loss of the decoded codes ``codes[idx]`` against the discs ``x``
    (n, 1, S, S, S) float (the loss of joint training: ``cfg.loss``, ``hard_weight``), and
    the logits.

    With ``cfg.code_noise`` > 0 each code is perturbed first (:func:`noisy_codes`)."""
    z = codes(idx.to(codes.weight.device))
    if cfg.code_noise > 0:
        z = noisy_codes(z, codes.weight, cfg.code_noise, generator)
    logits = model.decode(z)
    return reconstruction_loss(logits, x, cfg.loss, cfg.bce_weight, cfg.hard_weight), logits


def noisy_codes(
    z: torch.Tensor, all_codes: torch.Tensor, scale: float, generator: torch.Generator | None
) -> torch.Tensor:
    """``z`` (n, k) + ``scale`` x s x N(0, 1), s the standard deviation of ``all_codes``
    (m, k) per latent feature: the noise grows with the codes' spread, so the codes cannot
    outgrow it by spreading out (s is not differentiated, so the loss cannot shrink the noise
    through it either). The noise is drawn on the CPU from ``generator`` (seeded per epoch by
    the caller, so a resumed run draws the same noise)."""
    s = all_codes.detach().std(dim=0, keepdim=True)
    eps = torch.randn(z.shape, generator=generator).to(z.device)
    return z + scale * s * eps


def encoder_step(model: DiscAutoencoder, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the encoder's codes of ``x`` and the target codes (n, k)."""
    return F.mse_loss(model.encode(x), target)


@torch.inference_mode()
def decoder_iou(
    model: DiscAutoencoder, codes: nn.Embedding, data: torch.Tensor, batch_size: int = 32
) -> np.ndarray:
    """Per-disc IoU of the decoded codes (logit > 0) with the discs ``data`` (n, S, S, S)
    uint8, in eval mode."""
    model.eval()
    device = codes.weight.device
    out = []
    for i in range(0, len(data), batch_size):
        idx = torch.arange(i, min(i + batch_size, len(data)), device=device)
        pred = model.decode(codes(idx))[:, 0] > 0
        out.append(iou_per_disc(pred.cpu(), data[i : i + batch_size]))
    return np.concatenate(out) if out else np.zeros(0)
