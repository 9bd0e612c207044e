"""The compute device and how torch runs on it: one home for every GPU-related switch.

* :func:`resolve_device`: ``auto`` picks CUDA, else Apple's MPS, else the CPU.
* :func:`amp_dtype` and :func:`autocast`: mixed precision. ``amp="auto"`` trains in bfloat16
  autocast on a CUDA device that supports it and in float32 everywhere else; ``"bf16"``
  forces bfloat16 autocast (also on the CPU, which tests use to run the GPU code path);
  ``"off"`` never. bfloat16 has float32's exponent range, so no loss scaling is needed.
  Only training steps run under autocast: every evaluation that decides something (the
  autoencoder's IoU criterion, the segmentation models' validation IoU, early stopping, the
  best epoch) and every inference runs in float32, so mixed precision can change how fast a
  model learns but not how its criterion is computed (``book/method.md``, *Conventions*).
* :func:`configure_backends`: on CUDA, ``deterministic=True`` asks for deterministic
  algorithms (``torch.use_deterministic_algorithms(warn_only=True)``, cuDNN deterministic, no
  autotuning); ``deterministic=False`` lets cuDNN benchmark its convolution algorithms
  (``torch.backends.cudnn.benchmark``), faster for fixed patch sizes but not bit-reproducible.
  The environment variable ``DISCLATENT_DETERMINISTIC`` (``1``/``0``) overrides a profile.
* :func:`gpu_memory_peak_gb`: the CUDA memory peak since the last reset, for run records.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

AMP_MODES = ("off", "auto", "bf16")


def resolve_device(name: str = "auto", mps: bool = True) -> torch.device:
    """``auto``: CUDA, else Apple's MPS (unless ``mps=False``), else the CPU; any other name
    as torch reads it."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps_backend = getattr(torch.backends, "mps", None)
        if mps and mps_backend is not None and mps_backend.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def check_amp(mode: str) -> str:
    """``mode`` if it names an autocast mode (:data:`AMP_MODES`), else a ``ValueError``."""
    if mode not in AMP_MODES:
        raise ValueError(f"unknown amp mode {mode!r}; choose one of {', '.join(AMP_MODES)}")
    return mode


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``mode`` on ``device``; ``None``: float32, no autocast."""
    import torch

    check_amp(mode)
    if mode == "bf16":
        return torch.bfloat16
    if mode == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """``torch.autocast`` on ``device`` with ``dtype``; a no-op for ``dtype=None``."""
    import torch

    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def deterministic_setting(default: bool) -> bool:
    """``DISCLATENT_DETERMINISTIC`` (``1``/``true``/``0``/``false``) if set, else ``default``."""
    env = os.environ.get("DISCLATENT_DETERMINISTIC", "").strip().lower()
    if not env:
        return default
    if env in ("1", "true", "yes"):
        return True
    if env in ("0", "false", "no"):
        return False
    raise ValueError(f"DISCLATENT_DETERMINISTIC must be 1 or 0, got {env!r}")


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and Python's ``random`` (MONAI's
    ``set_determinism``, which also switches cuDNN autotuning off)."""
    from monai.utils import set_determinism

    set_determinism(seed=seed)


def configure_backends(device: torch.device, deterministic: bool) -> None:
    """cuDNN autotuning or determinism for ``device`` (see the module docstring); call it
    after seeding (MONAI's ``set_determinism`` switches autotuning off). A no-op off CUDA."""
    import torch

    if device.type != "cuda":
        return
    deterministic = deterministic_setting(deterministic)
    if deterministic:
        # cuBLAS needs a fixed workspace for deterministic results (CUDA >= 10.2)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def reset_gpu_memory_peak(device: torch.device) -> None:
    """Start a new CUDA memory peak on ``device`` (a no-op off CUDA)."""
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def gpu_memory_peak_gb(device: torch.device) -> float | None:
    """Peak CUDA memory allocated on ``device`` since the last reset, GB; ``None`` off CUDA."""
    import torch

    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 1e9, 3)
