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


# Supervised monocular depth (issue 11): the light U-Net's loss (paper 001) and the refinement CNNs' L2 (paper 002).

UNET_LOSS_ALPHA = 2.0  # paper 001, section 4.1
UNET_LOSS_BETA = 1.0  # not stated in paper 001; our choice
UNET_LOSS_GAMMA = 5.0  # paper 001, section 4.1


def _full_mask(prediction: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return torch.ones_like(prediction)
    if mask.shape != prediction.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} differs from the prediction's {tuple(prediction.shape)}")
    return mask.to(prediction.dtype)


def _check_depth_pair(prediction: torch.Tensor, target: torch.Tensor) -> None:
    if prediction.ndim != 4 or prediction.shape[1] != 1 or prediction.shape != target.shape:
        raise ValueError(f"prediction and target must both be (B, 1, H, W), got {tuple(prediction.shape)} and "
                         f"{tuple(target.shape)}")


def image_edge_weights(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(1 - exp(-g_x), 1 - exp(-g_y))`` of paper 001, eq. 6: weights near 1 on image edges, 0 on flat regions.

    ``g_x``, ``g_y``: absolute forward differences of the image along x and y, averaged over the colour channels;
    the last column (row) gets 0 (no forward neighbour).

    Args:
        image: (B, C, H, W) float image in [0, 1].

    Returns:
        two (B, 1, H, W) tensors in [0, 1).
    """
    grad_x = F.pad((image[..., :, 1:] - image[..., :, :-1]).abs().mean(1, keepdim=True), (0, 1, 0, 0))
    grad_y = F.pad((image[..., 1:, :] - image[..., :-1, :]).abs().mean(1, keepdim=True), (0, 0, 0, 1))
    return 1.0 - torch.exp(-grad_x), 1.0 - torch.exp(-grad_y)


def unet_depth_loss(prediction: torch.Tensor, target: torch.Tensor, image: torch.Tensor,
                    mask: torch.Tensor | None = None, alpha: float = UNET_LOSS_ALPHA, beta: float = UNET_LOSS_BETA,
                    gamma: float = UNET_LOSS_GAMMA) -> dict[str, torch.Tensor]:
    """The light U-Net's loss, paper 001 eq. 5-7, averaged over the valid pixels:

    ``L = (alpha L1 + beta (1 - SSIM) + gamma L_e) / (alpha + beta + gamma)`` with ``L1 = |p - p^|``,
    ``1 - SSIM(p, p^)`` (3x3 windows, :func:`ssim`) and the edge term
    ``L_e = (1 - exp(-g_x)) |p - p^| + (1 - exp(-g_y)) |p - p^|`` (:func:`image_edge_weights`). The paper sets
    alpha = 2 and gamma = 5 and does not state beta; we use beta = 1.

    Args:
        prediction: (B, 1, H, W) predicted normalised depth (paper 001 normalises depth to [0, 1]).
        target: (B, 1, H, W) target normalised depth; any value where ``mask`` is 0 (NaN allowed there).
        image: (B, C, H, W) the input image in [0, 1] (for the edge weights).
        mask: (B, 1, H, W) 1 where the target is known, 0 elsewhere (None: everywhere). Unknown target pixels
            are replaced by the detached prediction, so they add nothing to any term.
        alpha, beta, gamma: the weights (>= 0, not all 0).

    Returns:
        ``{"total", "l1", "ssim", "edge"}``: scalar tensors; ``total`` is the weighted, normalised sum; ``ssim``
        is the structural term ``1 - SSIM`` (0 for identical maps).

    Raises:
        ValueError: for shapes that differ, or weights that are negative or all 0.
    """
    _check_depth_pair(prediction, target)
    if min(alpha, beta, gamma) < 0 or alpha + beta + gamma <= 0:
        raise ValueError(f"alpha, beta and gamma must be >= 0 and not all 0, got {alpha}, {beta}, {gamma}")
    if image.ndim != 4 or image.shape[0] != prediction.shape[0] or image.shape[-2:] != prediction.shape[-2:]:
        raise ValueError(f"image shape {tuple(image.shape)} does not match the prediction's "
                         f"{tuple(prediction.shape)}")
    valid = _full_mask(prediction, mask)
    target = torch.where(valid > 0, torch.nan_to_num(target), prediction.detach())
    error = (prediction - target).abs()
    l1 = masked_mean(error, valid)
    structural = masked_mean(1.0 - ssim(prediction, target), valid)
    weight_x, weight_y = image_edge_weights(image)
    edge = masked_mean((weight_x + weight_y) * error, valid)
    total = (alpha * l1 + beta * structural + gamma * edge) / (alpha + beta + gamma)
    return {"total": total, "l1": l1, "ssim": structural, "edge": edge}


def l2_depth_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
                  ) -> torch.Tensor:
    """The refinement CNNs' L2 loss (paper 002, eq. 1), ``1/2 (y - y')^2`` averaged over the valid pixels.

    The paper sums the squared error over each image and divides by twice the batch size; we average over the
    pixels too, which only divides by the (fixed) pixel count and keeps the loss independent of the crop size.

    Args:
        prediction, target: (B, 1, H, W) normalised depth (target: any value where ``mask`` is 0, NaN allowed).
        mask: (B, 1, H, W) 1 where the target is known (None: everywhere).

    Returns:
        scalar tensor >= 0.

    Raises:
        ValueError: for shapes that differ.
    """
    _check_depth_pair(prediction, target)
    valid = _full_mask(prediction, mask)
    target = torch.where(valid > 0, torch.nan_to_num(target), prediction.detach())
    return masked_mean(0.5 * (prediction - target) ** 2, valid)


# Instrument segmentation (issue 13): cross-entropy with a soft-Jaccard term, as in Shvets, Rakhlin, Kalinin and
# Iglovikov, "Automatic Instrument Segmentation in Robot-Assisted Surgery Using Deep Learning" (2018), eq. 2:
# L = H - log J, with H the (binary) cross-entropy and J the soft Jaccard index of the probabilities.

SEGMENTATION_IGNORE = 255  # label value of pixels without a label (data.segmentation_sets.IGNORE)
#: Smoothing of the soft Jaccard in the training losses (pixels): with 1, a class absent from the truth and
#: predicted with a total probability m costs log(1 + m) instead of log(m / 1e-6), which would dominate the loss.
JACCARD_SMOOTHING = 1.0


def soft_jaccard(probability: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                 epsilon: float = 1e-6) -> torch.Tensor:
    """Soft Jaccard index (intersection over union of probabilities) over the valid pixels of a batch.

    ``J = (sum p t + eps) / (sum p + sum t - sum p t + eps)`` over pixels with ``valid`` = 1 (Shvets et al. 2018,
    eq. 1, with a small ``eps`` so that an empty target and an empty prediction give J = 1).

    Args:
        probability, target, valid: tensors of one shape; probability in [0, 1], target and valid 0/1 (float).

    Returns:
        scalar tensor in (0, 1].

    Example:
        >>> p = torch.tensor([1.0, 0.5, 0.0, 0.0]); t = torch.tensor([1.0, 1.0, 0.0, 1.0])
        >>> round(float(soft_jaccard(p, t, torch.ones(4))), 4)  # 1.5 / (1.5 + 3 - 1.5)
        0.5
    """
    probability, target = probability * valid, target * valid
    intersection = (probability * target).sum()
    union = probability.sum() + target.sum() - intersection
    return (intersection + epsilon) / (union + epsilon)


def binary_segmentation_loss(logits: torch.Tensor, target: torch.Tensor, jaccard_weight: float = 1.0,
                             ignore_index: int = SEGMENTATION_IGNORE) -> torch.Tensor:
    """``BCE - jaccard_weight * log(soft Jaccard)`` of an instrument logit map (Shvets et al. 2018, eq. 2), the
    Jaccard over the batch smoothed by :data:`JACCARD_SMOOTHING`.

    Args:
        logits: (B, 1, H, W) float logits of "instrument".
        target: (B, H, W) integer labels 0 background, 1 instrument, ``ignore_index`` = no label.
        jaccard_weight: weight of the ``-log J`` term (>= 0; 0 = plain binary cross-entropy).
        ignore_index: label of pixels left out of both terms.

    Returns:
        scalar tensor (0 when no pixel has a label).

    Raises:
        ValueError: for mismatched shapes or labels other than 0, 1 and ``ignore_index``.
    """
    if logits.dim() != 4 or logits.shape[1] != 1 or logits.shape[0:1] + logits.shape[2:] != target.shape:
        raise ValueError(f"binary loss needs logits (B, 1, H, W) and target (B, H, W), got {tuple(logits.shape)} "
                         f"and {tuple(target.shape)}")
    valid = target != ignore_index
    if bool(((target != 0) & (target != 1) & valid).any()):
        raise ValueError(f"binary targets must be 0, 1 or {ignore_index}, got {torch.unique(target).tolist()}")
    if not bool(valid.any()):
        return logits.sum() * 0.0
    logits = logits[:, 0]
    truth = (target == 1).float()
    bce = F.binary_cross_entropy_with_logits(logits[valid], truth[valid])
    if jaccard_weight == 0:
        return bce
    jaccard = soft_jaccard(torch.sigmoid(logits), truth, valid.float(), JACCARD_SMOOTHING)
    return bce - jaccard_weight * torch.log(jaccard)


def multiclass_segmentation_loss(logits: torch.Tensor, target: torch.Tensor, jaccard_weight: float = 1.0,
                                 label_sets: dict[int, tuple[int, ...]] | None = None,
                                 ignore_index: int = SEGMENTATION_IGNORE) -> torch.Tensor:
    """``CE - jaccard_weight * mean_c log(soft Jaccard_c)`` of class logits (Shvets et al. 2018, multi-class form),
    with optional *set labels* for codings coarser than the classes.

    A set label ``k`` in ``label_sets`` (e.g. ``{4: (2, 3)}``: EndoVis 2015's "manipulator" = wrist or claspers of
    the EndoVis 2017 coding) says the pixel belongs to one of those classes: its cross-entropy is
    ``-log sum_{c in set} p_c``, and the Jaccard term of the set uses the summed probability of its classes. The
    Jaccard of each class c >= 1 (background excluded) is taken over the pixels that carry a plain label, and only
    for classes present in the batch or predicted there.

    Args:
        logits: (B, C, H, W) float class logits.
        target: (B, H, W) integer labels 0..C-1, set labels, or ``ignore_index``.
        jaccard_weight: weight of the Jaccard term (>= 0).
        label_sets: set label -> the classes it stands for.
        ignore_index: label of pixels left out.

    Returns:
        scalar tensor (0 when no pixel has a label).

    Raises:
        ValueError: for mismatched shapes or a label that is neither a class, a set label nor ``ignore_index``.
    """
    label_sets = dict(label_sets or {})
    if logits.dim() != 4 or logits.shape[0:1] + logits.shape[2:] != target.shape:
        raise ValueError(f"multi-class loss needs logits (B, C, H, W) and target (B, H, W), got "
                         f"{tuple(logits.shape)} and {tuple(target.shape)}")
    classes = logits.shape[1]
    plain = (target >= 0) & (target < classes)
    known = plain | (target == ignore_index)
    for label in label_sets:
        known |= target == label
    if not bool(known.all()):
        raise ValueError(f"labels must be 0..{classes - 1}, set labels {sorted(label_sets)} or {ignore_index}; got "
                         f"{torch.unique(target[~known]).tolist()}")
    valid = target != ignore_index
    if not bool(valid.any()):
        return logits.sum() * 0.0
    log_probability = F.log_softmax(logits, dim=1)
    terms = []
    if bool(plain.any()):
        terms.append(-log_probability.gather(1, target.clamp(0, classes - 1)[:, None])[:, 0][plain])
    for label, members in label_sets.items():
        hit = target == label
        if bool(hit.any()):
            terms.append(-torch.logsumexp(log_probability[:, list(members)], dim=1)[hit])
    cross_entropy = torch.cat(terms).mean()
    if jaccard_weight == 0:
        return cross_entropy
    probability = log_probability.exp()
    jaccard_terms = []
    plain_weight = plain.float()
    for index in range(1, classes):
        truth = (target == index).float()
        if float(truth.sum()) > 0 or float((probability[:, index].detach() * plain_weight).sum()) > 0.5:
            jaccard_terms.append(torch.log(soft_jaccard(probability[:, index], truth, plain_weight,
                                                        JACCARD_SMOOTHING)))
    for label, members in label_sets.items():
        truth = (target == label).float()
        if float(truth.sum()) > 0:
            region = valid.float() * (1 - sum((target == m).float() for m in members))
            jaccard_terms.append(torch.log(soft_jaccard(probability[:, list(members)].sum(1), truth, region,
                                                        JACCARD_SMOOTHING)))
    if not jaccard_terms:
        return cross_entropy
    return cross_entropy - jaccard_weight * torch.stack(jaccard_terms).mean()


def warp_left_to_right(left: torch.Tensor, right_disparity: torch.Tensor,
                       padding_mode: str = "border") -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstruct the right view by sampling the left view at ``x + d_right`` (bilinear, differentiable).

    The mirror image of :func:`stereo_depth_ros.geometry.warp_right_to_left`: mirrored, the right view is a left
    view whose partner is the mirrored left view, so this is that warp on mirrored tensors (Godard et al. 2017,
    section 3: the right image reconstructed from the left one with the right disparity).

    Args:
        left: (B, C, H, W) float tensor (image, features or a disparity map).
        right_disparity: (B, 1, H, W) right-view disparity in pixels of this resolution.
        padding_mode: "border" or "zeros" (see ``warp_right_to_left``).

    Returns:
        ``(warped, in_view)``: (B, C, H, W) like ``left``, and the (B, 1, H, W) 0/1 mask of samples inside it.

    Example:
        >>> left = torch.arange(8.0).view(1, 1, 1, 8)
        >>> warped, _ = warp_left_to_right(left, torch.full((1, 1, 1, 8), 2.0))
        >>> [round(value, 4) for value in warped[0, 0, 0, :6].tolist()]
        [2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    """
    warped, in_view = warp_right_to_left(left.flip(-1), right_disparity.flip(-1), padding_mode=padding_mode)
    return warped.flip(-1), in_view.flip(-1)


def left_right_consistency(left_disparity: torch.Tensor, right_disparity: torch.Tensor,
                           valid: torch.Tensor | None = None) -> torch.Tensor:
    """Left-right disparity consistency, both directions (Godard et al. 2017, eq. 4; paper 004, eq. 5).

    ``mean |d_l(x) - d_r(x - d_l(x))| + mean |d_r(x) - d_l(x + d_r(x))|`` in pixels: zero when the two views'
    disparities describe the same surface.

    Args:
        left_disparity, right_disparity: (B, 1, H, W) disparities of the left and right view, pixels.
        valid: optional (B, 1, H, W) 0/1 mask of pixels that count.

    Returns:
        scalar tensor >= 0 (pixels).
    """
    if valid is None:
        valid = torch.ones_like(left_disparity)
    right_seen_from_left, _ = warp_right_to_left(right_disparity, left_disparity, padding_mode="border")
    left_seen_from_right, _ = warp_left_to_right(left_disparity, right_disparity, padding_mode="border")
    return (masked_mean((left_disparity - right_seen_from_left).abs(), valid)
            + masked_mean((right_disparity - left_seen_from_right).abs(), valid))


# Proxy supervision (issue 15): confident classical disparities as sparse labels, beside the self-supervised loss,
# as in Tonioni et al. 2017 ("Unsupervised Adaptation for Deep Stereo"), monoResMatch (Tosi et al. 2019) and
# "Reversing the cycle" (Aleotti et al. 2020).


def masked_proxy_loss(disparity: torch.Tensor, proxy: torch.Tensor, mask: torch.Tensor,
                      beta: float = 1.0) -> torch.Tensor:
    """Smooth L1 (Huber with ``beta``) between a predicted disparity and a proxy disparity, on confident pixels only.

    ``sum_M smooth_l1(d - p) / |M|`` over the pixels ``M`` where ``mask`` is 1; pixels where ``mask`` is 0 get no
    gradient (their proxy, any value including NaN, is replaced by the detached prediction), and the loss is 0, not
    NaN, when no pixel is confident.

    Args:
        disparity: (B, 1, H, W) predicted left disparity in pixels.
        proxy: (B, 1, H, W) proxy disparity in pixels (e.g. confident SGBM,
            :func:`stereo_depth_ros.evaluation.proxy_validation.confident_sgbm`); any value (NaN too) where ``mask``
            is 0.
        mask: (B, 1, H, W) 1 where the proxy is confident, 0 elsewhere (bool or float).
        beta: the smooth-L1 threshold in pixels (> 0): quadratic below it, linear above (1 px).

    Returns:
        scalar tensor >= 0, pixels.

    Raises:
        ValueError: for shapes that differ or are not (B, 1, H, W), or ``beta <= 0``.

    Example:
        >>> d = torch.tensor([[[[2.0, 5.0, 7.0]]]]); p = torch.tensor([[[[4.0, float("nan"), 7.5]]]])
        >>> float(masked_proxy_loss(d, p, torch.tensor([[[[1.0, 0.0, 1.0]]]])))
        0.8125
    """
    if disparity.ndim != 4 or disparity.shape[1] != 1 or proxy.shape != disparity.shape \
            or mask.shape != disparity.shape:
        raise ValueError(f"disparity, proxy and mask must all be (B, 1, H, W) of one shape, got "
                         f"{tuple(disparity.shape)}, {tuple(proxy.shape)} and {tuple(mask.shape)}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0 pixels, got {beta}")
    weight = mask.to(disparity.dtype)
    target = torch.where(weight > 0, torch.nan_to_num(proxy.to(disparity.dtype)), disparity.detach())
    error = F.smooth_l1_loss(disparity, target, reduction="none", beta=beta)
    return masked_mean(error, weight)
