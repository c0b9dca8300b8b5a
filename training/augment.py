"""Batched on-device augmentation of normalised digits: what normalize_digit cannot undo, the model must learn.

normalize_digit fixes size, position and (roughly) stroke width. What is left, and what canvases and
scans still bring, is rotation, slant, wobbly strokes, residual thickness, a pixel or two of jitter
and compression noise. One affine+elastic grid per batch, one grid_sample, a few pooling ops: cheap
enough to run every step on 2 CPU cores.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    rotate_deg: float = 15.0  # the service sees up to ~10-15 degrees of skew
    scale: float = 0.10  # +-10%: normalisation leaves small size differences (aspect, outliers)
    shear: float = 0.2  # slant, in tan units
    shift_px: float = 2.0
    elastic_px: float = 1.2  # amplitude of the smooth displacement field
    elastic_grid: int = 4  # coarse grid the displacement is drawn on (smaller = smoother)
    thickness_p: float = 0.5  # chance of a dilate or erode blend
    closing_p: float = 0.25  # chance of a morphological closing: a fat pen fills loops that thinning cannot reopen
    noise: float = 0.05  # gaussian pixel noise std, applied to half the batch (JPEG-ish residue)
    p: float = 0.9  # fraction of the batch augmented; the rest stays clean

    def to_dict(self) -> dict:
        return asdict(self)


def _max_filter(x: torch.Tensor, k: int, pad: float = 0.0) -> torch.Tensor:
    """k x k running maximum, same size, as two 1-D passes of shifted maxima: CPU max_pool2d with
    stride 1 is several times slower, and this runs on every training batch."""
    r = k // 2
    w, h = x.shape[-1], x.shape[-2]
    p = F.pad(x, (r, r, r, r), value=pad)
    rows = p[..., :, 0:w]
    for i in range(1, k):
        rows = torch.maximum(rows, p[..., :, i : i + w])
    out = rows[..., 0:h, :]
    for i in range(1, k):
        out = torch.maximum(out, rows[..., i : i + h, :])
    return out


def dilate(x: torch.Tensor, k: int = 3) -> torch.Tensor:
    return _max_filter(x, k, 0.0)


def erode(x: torch.Tensor, k: int = 3) -> torch.Tensor:
    return -_max_filter(-x, k, -1.0)


def _closing(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Dilate then erode (3x3 or 5x5): what a thick marker plus normalize_digit's thinning leaves behind,
    small loops and gaps filled in. Without it the model loses 1.5 points on strokes twice as thick."""
    n = x.shape[0]
    c3, c5 = erode(dilate(x, 3), 3), erode(dilate(x, 5), 5)
    big = torch.rand(n, 1, 1, 1, generator=g, device=x.device) < 0.5
    use = torch.rand(n, 1, 1, 1, generator=g, device=x.device) < cfg.closing_p
    return torch.where(use, torch.where(big, c5, c3), x)


def _thickness(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Blend each digit towards its 3x3 dilation (thicker) or erosion (thinner) by a random amount."""
    n = x.shape[0]
    dil, ero = dilate(x), erode(x)
    amount = torch.rand(n, 1, 1, 1, generator=g, device=x.device)
    which = torch.rand(n, 1, 1, 1, generator=g, device=x.device)
    use = (torch.rand(n, 1, 1, 1, generator=g, device=x.device) < cfg.thickness_p).float()
    target = torch.where(which < 0.5, dil, ero)
    return x + use * amount * (target - x)


def _grid(n: int, cfg: AugmentConfig, g: torch.Generator, device) -> torch.Tensor:
    """Sampling grid: random rotation, scale, shear and shift, plus a smooth elastic displacement."""
    def u(lo, hi):
        return torch.rand(n, generator=g, device=device) * (hi - lo) + lo

    a = u(-cfg.rotate_deg, cfg.rotate_deg) * math.pi / 180
    s = 1 + u(-cfg.scale, cfg.scale)
    sh = u(-cfg.shear, cfg.shear)
    t = u(-cfg.shift_px, cfg.shift_px) * 2 / 28, u(-cfg.shift_px, cfg.shift_px) * 2 / 28
    cos, sin = torch.cos(a), torch.sin(a)
    # output->input map: rotate, then shear x by y, then scale (the inverse scales the digit by s)
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0] = (cos + sh * sin) / s
    theta[:, 0, 1] = (-sin + sh * cos) / s
    theta[:, 1, 0] = sin / s
    theta[:, 1, 1] = cos / s
    theta[:, 0, 2], theta[:, 1, 2] = t
    grid = F.affine_grid(theta, (n, 1, 28, 28), align_corners=False)
    if cfg.elastic_px > 0:
        k = cfg.elastic_grid
        coarse = torch.randn(n, 2, k, k, generator=g, device=device) * (cfg.elastic_px * 2 / 28)
        coarse = coarse * torch.rand(n, 1, 1, 1, generator=g, device=device)  # per-digit strength
        field = F.interpolate(coarse, size=(28, 28), mode="bicubic", align_corners=True)
        grid = grid + field.permute(0, 2, 3, 1)
    return grid


def augment(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """x: (N,1,28,28) digits in [0,1] on any device; returns an augmented batch in [0,1]."""
    n = x.shape[0]
    out = _thickness(_closing(x, cfg, g), cfg, g)
    out = F.grid_sample(out, _grid(n, cfg, g, x.device), mode="bilinear", padding_mode="zeros", align_corners=False)
    if cfg.noise > 0:
        noisy = (torch.rand(n, 1, 1, 1, generator=g, device=x.device) < 0.5).float()
        out = out + noisy * cfg.noise * torch.randn(out.shape, generator=g, device=x.device)
    out = out.clamp(0, 1)
    keep = (torch.rand(n, 1, 1, 1, generator=g, device=x.device) >= cfg.p).float()
    return keep * x + (1 - keep) * out
