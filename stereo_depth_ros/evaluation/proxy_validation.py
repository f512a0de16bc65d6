"""A validation signal for stereo without ground truth: the end-point error against confident SGBM disparities.

Issue 15, item 1. The photometric error on held-out real pairs disagreed with the ground truth about the input
scale (docs/stereo.md), so this module gives a second signal: OpenCV's semi-global block matching (Hirschmueller
2008, ``cv2.StereoSGBM``) run on the left and on the right view, kept only where it is confident:

- uniqueness: SGBM's ``uniquenessRatio`` (the best matching cost must beat the second best by that percentage),
- speckle filter: SGBM's ``speckleWindowSize`` / ``speckleRange`` (small islands of disparity are removed),
- left-right consistency: the left disparity ``d_L(x)`` and the right disparity at its match, ``d_R(x - d_L(x))``,
  differ by at most ``left_right_threshold_px`` (1 px), which rejects occluded and mismatched pixels.

The right view's disparity comes from SGBM run on the mirrored, swapped pair (``cv2.ximgproc``'s right matcher is
not in the opencv-python wheels this package uses): mirroring both images and swapping them turns the right view
into a left view with positive disparities, and mirroring the result back gives ``d_R(x)`` in right-image columns.

This is the proxy label of proxy-supervised stereo and monocular work (Tonioni et al., "Unsupervised Adaptation
for Deep Stereo", ICCV 2017; Tosi et al., "Learning monocular depth estimation infusing traditional stereo
knowledge" (monoResMatch), CVPR 2019; Aleotti et al., "Reversing the cycle", ECCV 2020): where the classical
matcher is confident it is usually right (on the SCARED keyframe its valid pixels sit 0.34 px from the
structured-light GT, issue 15).

Pure NumPy/OpenCV: it takes disparities, never a network (the evaluation layer does not import models).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from stereo_depth_ros.evaluation.masks import restrict_to_mask
from stereo_depth_ros.images import check_stereo_pair


@dataclass(frozen=True)
class ConfidentSGBMConfig:
    """Settings of :func:`confident_sgbm`.

    Attributes:
        max_disparity: SGBM's ``numDisparities`` in pixels, a positive multiple of 16 (192 as the package's SGBM
            default; pixels closer than ``max_disparity`` to the left border get no value).
        block_size: odd matching block size in pixels, 1..11.
        uniqueness_ratio: SGBM's uniqueness margin in percent (10 in the package's SGBM; 15 here, stricter).
        speckle_window_size: largest connected region (pixels) that the speckle filter removes (0 = off).
        speckle_range: largest disparity step (pixels) inside one connected region.
        left_right_threshold_px: largest ``|d_L(x) - d_R(x - d_L(x))|`` in pixels a confident pixel may have.
    """

    max_disparity: int = 192
    block_size: int = 5
    uniqueness_ratio: int = 15
    speckle_window_size: int = 100
    speckle_range: int = 2
    left_right_threshold_px: float = 1.0

    def __post_init__(self) -> None:
        if self.max_disparity <= 0 or self.max_disparity % 16:
            raise ValueError(f"max_disparity must be a positive multiple of 16, got {self.max_disparity}")
        if self.block_size < 1 or self.block_size % 2 == 0 or self.block_size > 11:
            raise ValueError(f"block_size must be odd and in 1..11, got {self.block_size}")
        if not 0 <= self.uniqueness_ratio <= 100:
            raise ValueError(f"uniqueness_ratio must be in 0..100 (percent), got {self.uniqueness_ratio}")
        if self.speckle_window_size < 0 or self.speckle_range < 0:
            raise ValueError(f"speckle_window_size and speckle_range must be >= 0, got {self.speckle_window_size}, "
                             f"{self.speckle_range}")
        if not (math.isfinite(self.left_right_threshold_px) and self.left_right_threshold_px >= 0):
            raise ValueError(f"left_right_threshold_px must be finite and >= 0, got {self.left_right_threshold_px}")

    def key(self) -> str:
        """A short text naming every setting (for cache file names)."""
        return (f"d{self.max_disparity}-b{self.block_size}-u{self.uniqueness_ratio}-s{self.speckle_window_size}-"
                f"{self.speckle_range}-lr{self.left_right_threshold_px:g}")


@dataclass
class ConfidentDisparity:
    """Result of :func:`confident_sgbm`.

    Attributes:
        left: (H, W) float32 left disparity in pixels (``x_left - x_right``), NaN where not confident.
        right: (H, W) float32 right disparity in pixels (``x_left - x_right`` at right-image column ``x_right``), NaN
            where not confident.
        left_mask, right_mask: (H, W) bool, True where ``left`` / ``right`` is confident.
    """

    left: np.ndarray
    right: np.ndarray
    left_mask: np.ndarray
    right_mask: np.ndarray

    @property
    def density(self) -> float:
        """Fraction of left pixels with a confident disparity, in [0, 1]."""
        return float(self.left_mask.mean()) if self.left_mask.size else 0.0


def _matcher(config: ConfidentSGBMConfig) -> cv2.StereoSGBM:
    channels = 3
    return cv2.StereoSGBM_create(
        minDisparity=0, numDisparities=config.max_disparity, blockSize=config.block_size,
        P1=8 * channels * config.block_size ** 2, P2=32 * channels * config.block_size ** 2,
        disp12MaxDiff=-1,  # OpenCV's own check off: ours below runs in both directions with a sub-pixel threshold
        preFilterCap=63, uniquenessRatio=config.uniqueness_ratio, speckleWindowSize=config.speckle_window_size,
        speckleRange=config.speckle_range, mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)


def sgbm_left_right(left_bgr: np.ndarray, right_bgr: np.ndarray, config: ConfidentSGBMConfig | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """SGBM disparities of both views (uniqueness and speckle filter applied, no left-right check yet).

    Args:
        left_bgr, right_bgr: (H, W, 3) uint8 BGR rectified pair.
        config: SGBM settings (default :class:`ConfidentSGBMConfig`).

    Returns:
        ``(left, right)``: (H, W) float32 disparities in pixels, NaN where SGBM gave no value. ``right`` is indexed by
        right-image columns (from the mirrored, swapped pair).

    Raises:
        ValueError: for images that are not a uint8 (H, W, 3) pair of one size, or not wider than the search range.
    """
    check_stereo_pair(left_bgr, right_bgr)
    config = config or ConfidentSGBMConfig()
    if left_bgr.shape[1] <= config.max_disparity:
        raise ValueError(f"SGBM needs images wider than its search range: width {left_bgr.shape[1]} px, "
                         f"max_disparity {config.max_disparity} px")
    matcher = _matcher(config)

    def run(first: np.ndarray, second: np.ndarray) -> np.ndarray:
        raw = matcher.compute(np.ascontiguousarray(first), np.ascontiguousarray(second)).astype(np.float32) / 16.0
        raw[raw <= 0] = np.nan  # OpenCV marks no value with minDisparity - 1 (fixed point -16)
        return raw

    left = run(left_bgr, right_bgr)
    right = run(right_bgr[:, ::-1], left_bgr[:, ::-1])[:, ::-1]
    return left, np.ascontiguousarray(right)


def left_right_consistent(disparity: np.ndarray, other: np.ndarray, threshold_px: float = 1.0,
                          direction: int = -1) -> np.ndarray:
    """Pixels whose disparity agrees with the other view's disparity at their match.

    For a left disparity (``direction = -1``) the match of column ``x`` is ``x - d(x)`` in the right image; for a
    right disparity (``direction = +1``) it is ``x + d(x)`` in the left image. The other view's disparity is read at
    the nearest column (rounded).

    Args:
        disparity, other: (H, W) float disparities in pixels, NaN where unknown.
        threshold_px: largest allowed difference in pixels (>= 0).
        direction: -1 (``disparity`` is the left view's) or +1 (it is the right view's).

    Returns:
        (H, W) bool: True where ``disparity`` is finite, the match lies inside the image, the other view has a value
        there and ``|d(x) - other(match)| <= threshold_px``.

    Raises:
        ValueError: for shapes that differ or are not 2-D, a negative threshold or a direction other than -1, +1.

    Example:
        >>> import numpy as np
        >>> left = np.full((1, 6), 2.0); right = np.full((1, 6), 2.0); left[0, 5] = 4.0
        >>> left_right_consistent(left, right).tolist()
        [[False, False, True, True, True, False]]
    """
    disparity, other = np.asarray(disparity, dtype=np.float32), np.asarray(other, dtype=np.float32)
    if disparity.ndim != 2 or disparity.shape != other.shape:
        raise ValueError(f"left-right check needs two (H, W) disparities of one size, got {disparity.shape} and "
                         f"{other.shape}")
    if not threshold_px >= 0:
        raise ValueError(f"threshold_px must be >= 0, got {threshold_px}")
    if direction not in (-1, 1):
        raise ValueError(f"direction must be -1 (left disparity) or +1 (right disparity), got {direction}")
    height, width = disparity.shape
    finite = np.isfinite(disparity)
    columns = np.arange(width, dtype=np.float32)[None, :] + direction * np.where(finite, disparity, 0.0)
    match = np.rint(columns).astype(np.int64)
    inside = finite & (match >= 0) & (match < width)
    rows = np.broadcast_to(np.arange(height)[:, None], disparity.shape)
    seen = np.full(disparity.shape, np.nan, dtype=np.float32)
    seen[inside] = other[rows[inside], match[inside]]
    with np.errstate(invalid="ignore"):
        return inside & np.isfinite(seen) & (np.abs(disparity - seen) <= threshold_px)


def confident_sgbm(left_bgr: np.ndarray, right_bgr: np.ndarray, config: ConfidentSGBMConfig | None = None
                   ) -> ConfidentDisparity:
    """SGBM disparities of both views where they are confident (unique, not speckle, left-right consistent).

    Args:
        left_bgr, right_bgr: (H, W, 3) uint8 BGR rectified pair.
        config: settings (default :class:`ConfidentSGBMConfig`: 192 px, block 5, uniqueness 15 %, speckle
            100 px / 2 px, left-right <= 1 px).

    Returns:
        :class:`ConfidentDisparity` (float32 pixels, NaN where not confident, and the bool masks).

    Raises:
        ValueError: for images that are not a uint8 (H, W, 3) pair of one size.
    """
    config = config or ConfidentSGBMConfig()
    left, right = sgbm_left_right(left_bgr, right_bgr, config)
    left_mask = left_right_consistent(left, right, config.left_right_threshold_px, direction=-1)
    right_mask = left_right_consistent(right, left, config.left_right_threshold_px, direction=1)
    return ConfidentDisparity(left=np.where(left_mask, left, np.nan).astype(np.float32),
                              right=np.where(right_mask, right, np.nan).astype(np.float32),
                              left_mask=left_mask, right_mask=right_mask)


def proxy_epe(disparity: np.ndarray, proxy: np.ndarray, mask: np.ndarray | None = None) -> float:
    """End-point error of a disparity against a proxy disparity: ``mean |d - p|`` over the confident pixels.

    Args:
        disparity: (H, W) predicted disparity in pixels (NaN = no value; such pixels are left out).
        proxy: (H, W) proxy disparity in pixels (e.g. :attr:`ConfidentDisparity.left`), NaN where unknown.
        mask: optional (H, W) bool of confident pixels (None: where ``proxy`` is finite).

    Returns:
        the mean absolute difference in pixels over pixels where ``mask`` is True and both values are finite; NaN
        when there is no such pixel.

    Raises:
        ValueError: for shapes that differ or are not 2-D.

    Example:
        >>> import numpy as np
        >>> proxy_epe(np.array([[1.0, 2.0, 9.0]]), np.array([[1.5, 3.0, 0.0]]), np.array([[True, True, False]]))
        0.75
    """
    disparity, proxy = np.asarray(disparity, dtype=np.float64), np.asarray(proxy, dtype=np.float64)
    if disparity.ndim != 2 or disparity.shape != proxy.shape:
        raise ValueError(f"proxy_epe needs a disparity and a proxy of one (H, W) shape, got {disparity.shape} and "
                         f"{proxy.shape}")
    keep = restrict_to_mask(np.isfinite(disparity) & np.isfinite(proxy), mask, "proxy")
    return float(np.abs(disparity - proxy)[keep].mean()) if np.any(keep) else math.nan


def spearman_correlation(first, second) -> float:
    """Spearman's rank correlation of two equally long sequences (ties get their average rank).

    Uses ``scipy.stats.spearmanr`` when SciPy is installed, else the Pearson correlation of NumPy average ranks
    (the same number).

    Args:
        first, second: sequences of finite numbers, at least 3 each, the same length.

    Returns:
        the correlation in [-1, 1] (1 = the same order); NaN when either sequence is constant.

    Raises:
        ValueError: for sequences of different lengths, shorter than 3, or with non-finite values.

    Example:
        >>> spearman_correlation([1.0, 2.0, 3.0, 4.0], [10.0, 30.0, 20.0, 40.0])
        0.8
    """
    a, b = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.size < 3:
        raise ValueError(f"spearman_correlation needs two sequences of one length >= 3, got {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("spearman_correlation needs finite values")
    if np.all(a == a[0]) or np.all(b == b[0]):
        return math.nan
    try:
        from scipy.stats import spearmanr
    except ImportError:
        spearmanr = None
    if spearmanr is not None:
        return round(float(spearmanr(a, b).statistic), 12)

    def ranks(values: np.ndarray) -> np.ndarray:
        order = np.argsort(values, kind="stable")
        result = np.empty(values.size, dtype=np.float64)
        result[order] = np.arange(1, values.size + 1)
        for value in np.unique(values):  # average rank for ties
            tied = values == value
            result[tied] = result[tied].mean()
        return result

    return round(float(np.corrcoef(ranks(a), ranks(b))[0, 1]), 12)
