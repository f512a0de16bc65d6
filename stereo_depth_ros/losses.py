"""Self-supervised stereo losses (photometric reconstruction, SSIM, edge-aware smoothness, left-right consistency).

Source: the package's paper 000 ("Self-Supervised Objective": reconstruct the left image by sampling the right
image with the left disparity), with the loss terms of Godard et al., "Unsupervised Monocular Depth Estimation with
Left-Right Consistency" (CVPR 2017), eq. 2 (appearance, alpha = 0.85, 3x3 SSIM), eq. 3 (edge-aware smoothness) and
eq. 4 (left-right consistency), and AnyNet's per-stage weights (0.25, 0.5, 1, 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from stereo_depth_ros.geometry import warp_right_to_left

SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Structural similarity on 3x3 windows (Wang et al. 2004), per pixel.

    Args:
        x, y: (B, C, H, W) float images in [0, 1].

    Returns:
        (B, C, H, W) SSIM in [-1, 1] (1 = identical), reflection padding at the borders.

    Raises:
        ValueError: if the shapes differ.
    """
    if x.shape != y.shape:
        raise ValueError(f"ssim needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    x = F.pad(x, (1, 1, 1, 1), mode="reflect")
    y = F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x = F.avg_pool2d(x, 3, 1)
    mu_y = F.avg_pool2d(y, 3, 1)
    sigma_x = F.avg_pool2d(x * x, 3, 1) - mu_x ** 2
    sigma_y = F.avg_pool2d(y * y, 3, 1) - mu_y ** 2
    sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + SSIM_C1) * (2 * sigma_xy + SSIM_C2)
    denominator = (mu_x ** 2 + mu_y ** 2 + SSIM_C1) * (sigma_x + sigma_y + SSIM_C2)
    return numerator / denominator


def appearance_error(target: torch.Tensor, reconstruction: torch.Tensor, alpha: float = 0.85) -> torch.Tensor:
    """Per-pixel appearance error ``alpha * (1 - SSIM) / 2 + (1 - alpha) * |target - reconstruction|``.

    Godard et al. 2017, eq. 2, averaged over the colour channels.

    Args:
        target, reconstruction: (B, C, H, W) images in [0, 1].
        alpha: weight of the SSIM term, in [0, 1].

    Returns:
        (B, 1, H, W) non-negative error (0 for identical images).
    """
    dssim = torch.clamp((1.0 - ssim(target, reconstruction)) / 2.0, 0.0, 1.0)
    l1 = (target - reconstruction).abs()
    return (alpha * dssim + (1.0 - alpha) * l1).mean(1, keepdim=True)


def edge_aware_smoothness(disparity: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Edge-aware first-order smoothness of a mean-normalised disparity (Godard et al. 2017, eq. 3).

    ``mean(|dx d*| exp(-|dx I|) + |dy d*| exp(-|dy I|))`` with ``d* = d / mean(d)`` so the term does not depend on
    the disparity's scale. The mean is taken out of the gradient (detached): otherwise the term falls as the mean
    disparity grows, which rewards inflating the disparity wherever the photometric term is flat (we measured a
    +7 px bias on the BDIS synthetic sets from that before detaching it).

    Args:
        disparity: (B, 1, H, W) pixels.
        image: (B, C, H, W) the left image in [0, 1].

    Returns:
        scalar tensor >= 0 (0 for a constant disparity).
    """
    normalised = disparity / (disparity.mean((2, 3), keepdim=True).detach() + 1e-3)
    grad_dx = (normalised[..., :, 1:] - normalised[..., :, :-1]).abs()
    grad_dy = (normalised[..., 1:, :] - normalised[..., :-1, :]).abs()
    image_dx = (image[..., :, 1:] - image[..., :, :-1]).abs().mean(1, keepdim=True)
    image_dy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(1, keepdim=True)
    return (grad_dx * torch.exp(-image_dx)).mean() + (grad_dy * torch.exp(-image_dy)).mean()


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over pixels where ``mask`` is 1 (0 when the mask is empty)."""
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


@dataclass
class PhotometricLossConfig:
    """Weights of the self-supervised stereo objective.

    Attributes:
        stage_weights: weight of each stage's loss (AnyNet: 0.25, 0.5, 1, 1).
        alpha: SSIM weight of the appearance term (0.85).
        smoothness_weight: weight of the edge-aware smoothness term: one number for every stage, or one per stage
            (a finer stage can be smoothed more where its small cost volume sees too little texture).
        left_right_weight: weight of the left-right consistency term (0 = off; needs the right disparity).
    """

    stage_weights: tuple[float, ...] = (0.25, 0.5, 1.0, 1.0)
    alpha: float = 0.85
    smoothness_weight: float | tuple[float, ...] = 0.01
    left_right_weight: float = 0.0

    def __post_init__(self) -> None:
        weights = self.smoothness_weights()
        if any(not math.isfinite(w) or w < 0 for w in weights):
            raise ValueError(f"smoothness weights must be finite and >= 0, got {self.smoothness_weight}")
        if len(weights) not in (1, len(self.stage_weights)):
            raise ValueError(f"give one smoothness weight or one per stage ({len(self.stage_weights)}), got "
                             f"{len(weights)}")

    def smoothness_weights(self) -> tuple[float, ...]:
        """The smoothness weights as a tuple (one entry = the same for every stage)."""
        if isinstance(self.smoothness_weight, (int, float)):
            return (float(self.smoothness_weight),)
        return tuple(float(w) for w in self.smoothness_weight)

    def smoothness_weight_of(self, stage: int) -> float:
        """The smoothness weight of ``stage`` (0-based)."""
        weights = self.smoothness_weights()
        return weights[0] if len(weights) == 1 else weights[stage]


@dataclass
class StageLosses:
    """Result of :func:`self_supervised_stereo_loss`: total (scalar, for backward) and one float per stage."""

    total: torch.Tensor
    per_stage: list[float] = field(default_factory=list)
    appearance: list[float] = field(default_factory=list)


def photometric_error_map(left: torch.Tensor, right: torch.Tensor, disparity: torch.Tensor,
                          alpha: float = 0.85) -> tuple[torch.Tensor, torch.Tensor]:
    """Appearance error of the left image reconstructed from the right one with the left disparity.

    Args:
        left, right: (B, 3, H, W) images in [0, 1].
        disparity: (B, 1, H, W) left disparity, pixels.
        alpha: SSIM weight.

    Returns:
        ``(error, in_view)``: (B, 1, H, W) error and the 0/1 mask of pixels whose source ``x - d`` lies inside the
        right image (the out-of-view mask).
    """
    reconstruction, in_view = warp_right_to_left(right, disparity, padding_mode="border")
    return appearance_error(left, reconstruction, alpha), in_view


def self_supervised_stereo_loss(left: torch.Tensor, right: torch.Tensor, stages: list[torch.Tensor],
                                valid: torch.Tensor | None = None, config: PhotometricLossConfig | None = None,
                                right_stages: list[torch.Tensor] | None = None) -> StageLosses:
    """The training objective: per-stage photometric reconstruction + smoothness (+ optional left-right term).

    For each stage ``s`` with disparity ``d_s``: ``L_s = mean_M(appearance(left, warp(right, d_s)))
    + smoothness_weight_s * smooth(d_s, left) [+ left_right_weight * mean_M |d_s - warp(d_right_s, d_s)|]``, where
    ``M`` is ``valid`` times the out-of-view mask; total ``= sum_s stage_weights[s] * L_s``.

    Args:
        left, right: (B, 3, H, W) float images in [0, 1].
        stages: list of (B, 1, H, W) left disparities (pixels), coarse to fine.
        valid: optional (B, 1, H, W) 0/1 mask of pixels that count (e.g. not black border).
        config: loss weights.
        right_stages: right-view disparities for the left-right consistency term (same shapes), or None.

    Returns:
        :class:`StageLosses` with the differentiable total and per-stage floats.

    Raises:
        ValueError: if there are more stages than stage weights.
    """
    config = config or PhotometricLossConfig()
    if len(stages) > len(config.stage_weights):
        raise ValueError(f"{len(stages)} stages but only {len(config.stage_weights)} stage weights")
    if valid is None:
        valid = torch.ones_like(left[:, :1])
    total = left.new_zeros(())
    result = StageLosses(total=total)
    for index, disparity in enumerate(stages):
        error, in_view = photometric_error_map(left, right, disparity, config.alpha)
        mask = valid * in_view
        appearance = masked_mean(error, mask)
        loss = appearance + config.smoothness_weight_of(index) * edge_aware_smoothness(disparity, left)
        if config.left_right_weight > 0 and right_stages is not None:
            # The right disparity seen from the left view: sample it at x - d.
            projected, _ = warp_right_to_left(right_stages[index], disparity, padding_mode="border")
            loss = loss + config.left_right_weight * masked_mean((disparity - projected).abs(), mask)
        total = total + config.stage_weights[index] * loss
        result.per_stage.append(float(loss.detach()))
        result.appearance.append(float(appearance.detach()))
    result.total = total
    return result
