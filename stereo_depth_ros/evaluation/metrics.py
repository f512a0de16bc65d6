"""Stereo accuracy metrics against ground-truth disparity, and the photometric error for data without one.

Notation (every function): ``gt`` and ``pred`` are (H, W) disparities in pixels, NaN where unknown.

- GT-valid pixels ``V``: ``gt`` finite and > 0, and ``mask`` True where a mask is given.
- Scored pixels ``P``: pixels of ``V`` where ``pred`` is finite (the method gave a value). Error metrics are means
  over ``P``, so a sparse method (SGBM) is scored on fewer pixels; :func:`density_pct` reports how many.
- ``e = |pred - gt|`` on ``P``.

Metrics return ``nan`` when there is no pixel to score. Sources: end-point error and bad-N% as in the Middlebury
stereo evaluation (Scharstein & Szeliski 2002, "bad pixels"); D1 as in the KITTI 2015 stereo benchmark (Menze &
Geiger, CVPR 2015: a pixel is an outlier when its error exceeds 3 px and 5 % of the true disparity).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from stereo_depth_ros.images import bgr_to_tensor
from stereo_depth_ros.evaluation.masks import restrict_to_mask
from stereo_depth_ros.losses import photometric_error_map

METRIC_KEYS = ("epe_px", "bad2_pct", "d1_pct", "density_pct", "mae_mm", "rmse_mm")


def gt_valid_mask(gt: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``V``: (H, W) bool, True where the ground truth is finite and > 0 (and ``mask`` is True).

    Raises:
        ValueError: if ``gt`` is not 2-D or ``mask`` has another shape.
    """
    gt = np.asarray(gt)
    if gt.ndim != 2:
        raise ValueError(f"ground-truth disparity must be (H, W), got shape {gt.shape}")
    return restrict_to_mask(np.isfinite(gt) & (gt > 0), mask, "ground truth")


def scored_mask(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``P``: (H, W) bool, GT-valid pixels where the prediction has a value: finite and > 0.

    A disparity of 0 (or less) is no value: it has no finite depth, and the ROS path (the node's ``depth``, the
    replay's scoring of ``DisparityImage``) treats it as invalid too, so offline and replayed metrics agree.

    Raises:
        ValueError: if the shapes of ``pred``, ``gt`` and ``mask`` differ or are not 2-D.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"predicted disparity shape {pred.shape} differs from the ground truth's {gt.shape}")
    with np.errstate(invalid="ignore"):
        return gt_valid_mask(gt, mask) & np.isfinite(pred) & (pred > 0)


def _errors(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    scored = scored_mask(pred, gt, mask)
    gt_values = np.asarray(gt, dtype=np.float64)[scored]
    return np.abs(np.asarray(pred, dtype=np.float64)[scored] - gt_values), gt_values


def epe_px(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """End-point error in pixels: ``mean_P |pred - gt|``.

    Returns:
        float >= 0, pixels; nan when ``P`` is empty.
    """
    errors, _ = _errors(pred, gt, mask)
    return float(errors.mean()) if errors.size else math.nan


def bad_pct(pred: np.ndarray, gt: np.ndarray, threshold: float = 2.0, mask: np.ndarray | None = None) -> float:
    """Share of bad pixels in percent: ``100 * |{p in P : e_p > threshold}| / |P|`` (bad2 for threshold 2 px).

    Returns:
        float in [0, 100]; nan when ``P`` is empty.
    """
    errors, _ = _errors(pred, gt, mask)
    return float(100.0 * np.count_nonzero(errors > threshold) / errors.size) if errors.size else math.nan


def d1_pct(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """KITTI 2015 D1 outlier rate in percent: ``100 * |{p in P : e_p > 3 px and e_p > 0.05 * gt_p}| / |P|``.

    Returns:
        float in [0, 100]; nan when ``P`` is empty.
    """
    errors, gt_values = _errors(pred, gt, mask)
    if not errors.size:
        return math.nan
    outliers = (errors > 3.0) & (errors > 0.05 * gt_values)
    return float(100.0 * np.count_nonzero(outliers) / errors.size)


def density_pct(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Density in percent: ``100 * |P| / |V|``, the share of GT-valid pixels with a prediction (finite, > 0).

    Returns:
        float in [0, 100]; nan when ``V`` is empty.
    """
    scored = scored_mask(pred, gt, mask)
    valid_count = np.count_nonzero(gt_valid_mask(gt, mask))
    return float(100.0 * np.count_nonzero(scored) / valid_count) if valid_count else math.nan


def depth_errors_mm(pred: np.ndarray, gt: np.ndarray, focal_px: float, baseline_m: float,
                    mask: np.ndarray | None = None, disparity_offset_px: float = 0.0) -> tuple[float, float]:
    """Depth mean absolute error and root-mean-square error in millimetres.

    Both disparities become depths ``Z = f * B / (d + doffs)`` (metres; ``doffs`` is Middlebury 2014's
    principal-point offset ``cx_right - cx_left``, 0 for most data) and
    ``MAE = 1000 * mean |Z_pred - Z_gt|``, ``RMSE = 1000 * sqrt(mean (Z_pred - Z_gt)^2)`` over the pixels of ``P``
    where ``pred + doffs > 0`` (a depth exists).

    Args:
        focal_px: focal length in pixels, > 0.
        baseline_m: baseline in metres, > 0.
        disparity_offset_px: ``doffs`` in pixels added to both disparities.

    Returns:
        ``(mae_mm, rmse_mm)``; nan, nan when no pixel has a depth.

    Raises:
        ValueError: for a focal length or baseline that is not a finite positive number, or mismatched shapes.
    """
    for name, value in (("focal_px", focal_px), ("baseline_m", baseline_m)):
        if value is None or not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a finite positive number, got {value}")
    scored = scored_mask(pred, gt, mask)
    pred_d = np.asarray(pred, dtype=np.float64)[scored] + disparity_offset_px
    gt_d = np.asarray(gt, dtype=np.float64)[scored] + disparity_offset_px
    keep = (pred_d > 0) & (gt_d > 0)
    if not np.any(keep):
        return math.nan, math.nan
    difference_m = focal_px * baseline_m / pred_d[keep] - focal_px * baseline_m / gt_d[keep]
    return float(1000.0 * np.abs(difference_m).mean()), float(1000.0 * np.sqrt((difference_m ** 2).mean()))


def mae_mm(pred: np.ndarray, gt: np.ndarray, focal_px: float, baseline_m: float,
           mask: np.ndarray | None = None, disparity_offset_px: float = 0.0) -> float:
    """Depth mean absolute error ``1000 * mean |f B / pred - f B / gt|`` in mm (see :func:`depth_errors_mm`)."""
    return depth_errors_mm(pred, gt, focal_px, baseline_m, mask, disparity_offset_px)[0]


def rmse_mm(pred: np.ndarray, gt: np.ndarray, focal_px: float, baseline_m: float,
            mask: np.ndarray | None = None, disparity_offset_px: float = 0.0) -> float:
    """Depth root-mean-square error ``1000 * sqrt(mean (f B / pred - f B / gt)^2)`` in mm (see
    :func:`depth_errors_mm`)."""
    return depth_errors_mm(pred, gt, focal_px, baseline_m, mask, disparity_offset_px)[1]


def stereo_metrics(pred: np.ndarray, gt: np.ndarray, focal_px: float | None = None, baseline_m: float | None = None,
                   mask: np.ndarray | None = None, disparity_offset_px: float = 0.0) -> dict:
    """Every metric of this module for one predicted disparity.

    Args:
        pred, gt: (H, W) disparities in pixels, NaN where unknown.
        focal_px, baseline_m: calibration for the depth errors (pixels, metres); both or neither.
        mask: optional (H, W) bool of pixels to evaluate (e.g. non-occluded).
        disparity_offset_px: Middlebury 2014 ``doffs`` for the depth errors (0 otherwise).

    Returns:
        ``{"epe_px", "bad2_pct", "d1_pct", "density_pct", "mae_mm", "rmse_mm"}``: floats (nan when nothing can
        be scored); ``mae_mm`` and ``rmse_mm`` are None without calibration.

    Raises:
        ValueError: for mismatched shapes, or only one of ``focal_px`` and ``baseline_m``.
    """
    if (focal_px is None) != (baseline_m is None):
        raise ValueError("give both focal_px and baseline_m for depth errors, or neither")
    result = {"epe_px": epe_px(pred, gt, mask), "bad2_pct": bad_pct(pred, gt, 2.0, mask),
              "d1_pct": d1_pct(pred, gt, mask), "density_pct": density_pct(pred, gt, mask),
              "mae_mm": None, "rmse_mm": None}
    if focal_px is not None:
        result["mae_mm"], result["rmse_mm"] = depth_errors_mm(pred, gt, focal_px, baseline_m, mask,
                                                              disparity_offset_px)
    return result


def disparity_valid_mask(disparity: np.ndarray) -> np.ndarray:
    """Pixels where a left disparity can be scored photometrically: finite, > 0, and ``0 <= x - d <= W - 1``.

    Returns:
        (H, W) bool.

    Raises:
        ValueError: if ``disparity`` is not 2-D.
    """
    disparity = np.asarray(disparity, dtype=np.float32)
    if disparity.ndim != 2:
        raise ValueError(f"disparity must be (H, W), got shape {disparity.shape}")
    x = np.arange(disparity.shape[1], dtype=np.float32)[None, :]
    with np.errstate(invalid="ignore"):
        source = x - disparity
        return np.isfinite(disparity) & (disparity > 0) & (source >= 0) & (source <= disparity.shape[1] - 1)


def photometric_error_image(left_bgr: np.ndarray, right_bgr: np.ndarray, disparity: np.ndarray,
                            alpha: float = 0.85) -> np.ndarray:
    """Per-pixel appearance error of the left image reconstructed from the right one with ``disparity``.

    The training objective's per-pixel error (:func:`stereo_depth_ros.losses.appearance_error`,
    ``alpha * (1 - SSIM) / 2 + (1 - alpha) * |L - R~|`` on RGB in [0, 1], 3x3 SSIM; Godard et al. 2017 eq. 2), with
    ``R~`` the right image sampled at ``x - d`` (:func:`stereo_depth_ros.geometry.warp_right_to_left`). Unknown
    disparities are filled with the nearest known one in their row before warping (:func:`fill_row_holes`), so the
    3x3 SSIM windows next to holes see a plausible reconstruction; the filled pixels themselves are NaN in the result.

    Args:
        left_bgr, right_bgr: (H, W, 3) uint8 BGR rectified pair.
        disparity: (H, W) left disparity in pixels, NaN where unknown.
        alpha: SSIM weight (0.85 as in training).

    Returns:
        (H, W) float32 error >= 0, NaN outside :func:`disparity_valid_mask`.

    Raises:
        ValueError: if the images and disparity differ in size or are not uint8 (H, W, 3) / (H, W).
    """
    from stereo_depth_ros.images import check_stereo_pair

    check_stereo_pair(left_bgr, right_bgr)
    disparity = np.asarray(disparity, dtype=np.float32)
    if disparity.shape != left_bgr.shape[:2]:
        raise ValueError(f"disparity shape {disparity.shape} differs from the images' {left_bgr.shape[:2]}")
    valid = disparity_valid_mask(disparity)
    if not np.any(valid):
        return np.full(disparity.shape, np.nan, dtype=np.float32)

    with torch.inference_mode():
        error, _ = photometric_error_map(bgr_to_tensor(left_bgr), bgr_to_tensor(right_bgr),
                                         torch.from_numpy(fill_row_holes(disparity))[None, None], alpha)
    error = error[0, 0].numpy().astype(np.float32)
    error[~valid] = np.nan
    return error


def masked_mean(values: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean of the finite ``values`` where ``mask`` is True (nan when there are none).

    Raises:
        ValueError: if the mask's shape differs.
    """
    values = np.asarray(values, dtype=np.float64)
    keep = restrict_to_mask(np.isfinite(values), mask, "values")
    return float(values[keep].mean()) if np.any(keep) else math.nan


def photometric_error(left_bgr: np.ndarray, right_bgr: np.ndarray, disparity: np.ndarray,
                      mask: np.ndarray | None = None, alpha: float = 0.85) -> float:
    """Mean photometric (appearance) error of ``disparity``: :func:`photometric_error_image` averaged over the
    pixels where the disparity is finite, > 0 and ``0 <= x - d <= W - 1`` (:func:`disparity_valid_mask`), and
    ``mask`` is True.

    To compare two methods fairly, pass as ``mask`` the intersection of both methods' :func:`disparity_valid_mask`
    (and of the image's active area).

    Args:
        left_bgr, right_bgr: (H, W, 3) uint8 BGR rectified pair.
        disparity: (H, W) left disparity in pixels, NaN where unknown.
        mask: optional (H, W) bool of pixels that count (e.g. the active area without black borders).
        alpha: SSIM weight (0.85 as in training).

    Returns:
        float >= 0 (0 for a perfect reconstruction); nan when no pixel counts.

    Raises:
        ValueError: if the images, disparity or mask differ in size, or the images are not uint8 (H, W, 3).
    """
    if mask is not None and np.asarray(mask).shape != np.asarray(disparity).shape:
        raise ValueError(f"mask shape {np.asarray(mask).shape} differs from the disparity's "
                         f"{np.asarray(disparity).shape}")
    return masked_mean(photometric_error_image(left_bgr, right_bgr, disparity, alpha), mask)


def fill_row_holes(disparity: np.ndarray) -> np.ndarray:
    """Fill NaN (and <= 0) disparities with the nearest known value to the left in the row, else to the right
    (rows without any value become 0).

    Returns:
        (H, W) float32 without NaN.
    """
    disparity = np.asarray(disparity, dtype=np.float32)
    known = np.isfinite(disparity) & (disparity > 0)
    h, w = disparity.shape
    columns = np.broadcast_to(np.arange(w), (h, w))
    left_index = np.maximum.accumulate(np.where(known, columns, -1), axis=1)
    right_index = np.minimum.accumulate(np.where(known, columns, w)[:, ::-1], axis=1)[:, ::-1]
    index = np.where(left_index >= 0, left_index, right_index)
    rows = np.arange(h)[:, None]
    filled = np.where(index < w, disparity[rows, np.clip(index, 0, w - 1)], 0.0)
    return np.nan_to_num(filled.astype(np.float32), nan=0.0)
