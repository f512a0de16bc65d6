"""Monocular depth accuracy metrics: the monodepth2 / AF-SfMLearner protocol, the refinement-CNN paper's six and
the light U-Net paper's two.

Notation (every function): ``pred`` and ``gt`` are (H, W) depths in metres; NaN, inf and values <= 0 are unknown.

- GT-valid pixels ``V``: ``gt`` finite, ``> 0`` and inside the stated range ``[min_depth_m, max_depth_m]`` (and
  ``mask`` True where a mask is given).
- Scored pixels ``P``: pixels of ``V`` where ``pred`` is finite and ``> 0`` (the model gave a depth).
  ``density_pct = 100 |P| / |V|``.
- Scale ``s = median_P(gt) / median_P(pred)``, reported always (for a metric model it says how far its unit is off:
  1.0 is right); with ``median_scaling=True`` the prediction is multiplied by ``s`` before scoring (per-frame
  median scaling, Zhou et al. CVPR 2017 sec. 4.1, as monodepth2 (Godard et al. ICCV 2019) and AF-SfMLearner
  (Shao et al. MedIA 2022) evaluate scale-free models).
- After scaling, the prediction is clipped to ``[min_depth_m, max_depth_m]`` (monodepth2's ``evaluate_depth``);
  ``p`` and ``g`` below are the clipped prediction and the GT on ``P``.

Protocol metrics (Eigen et al. NIPS 2014 sec. 4; monodepth2 / AF-SfMLearner code):

- ``abs_rel = mean |g - p| / g``; ``sq_rel = mean (g - p)^2 / g`` (metres);
- ``rmse_m = sqrt(mean (g - p)^2)`` (metres); ``rmse_log = sqrt(mean (ln g - ln p)^2)``;
- ``delta_k = share of pixels with max(g / p, p / g) < 1.25^k`` for k = 1, 2, 3 (in [0, 1]).

The refinement-CNN paper's six (Valdez Rodriguez et al., "Single-Stage Refinement CNN for Depth Estimation in
Monocular Images", sec. 3.4, eqs. 2-7; ``y`` = target, ``y'`` = reconstruction, as printed):

- ``rmse_m`` (eq. 2, the same as the protocol's);  ``mse_m2 = mean (g - p)^2`` (eq. 3, square metres);
- ``ard = mean |g - p| / p`` (eq. 4: divided by the *reconstruction*, unlike ``abs_rel``);
- ``lrmse = sqrt(mean (ln g - ln p)^2)`` (eq. 5, the same as ``rmse_log``);
- ``lrmse_si = sqrt(mean d^2 - (mean d)^2)`` with ``d = ln p - ln g``: the scale-invariant log error of Eigen et al.
  2014 (eq. 1 with lambda = 1, square-rooted), which the paper cites for its measures. Eq. 6 as printed is
  ``mean (ln g - ln p)^2``, i.e. ``lrmse^2`` and not scale-invariant; the paper's own Table 1 is not ``lrmse^2``
  (LRMSE 0.3377, LRMSE-SI 0.2068) but fits Eigen's form, so we follow Eigen;
- ``srd = mean (g - p)^2 / p`` (eq. 7, metres: divided by the reconstruction as printed).

The light U-Net paper's two (Chen, "Realtime Single Image Depth Estimation", sec. 4, eq. 8 and SSIM), on depth
normalised to [0, 1] (the paper normalises its labels to [0, 1]): ``n(z) = (clip(z) - min_depth_m) /
(max_depth_m - min_depth_m)``:

- ``mse_normalised = mean (n(g) - n(p))^2`` on ``P``;
- ``ssim_normalised``: scikit-image's ``structural_similarity`` (7x7 uniform window, data range 1, Wang et al.
  2004) of the two normalised images with every pixel outside ``P`` set to 0 in both, averaged over ``P``.

``max_depth_m=None`` caps at the frame's largest GT-valid depth (stated per table). Every metric is nan when ``P``
is empty; ``density_pct`` is nan when ``V`` is empty. :func:`mean_over_frames` averages per-frame rows as monodepth2
does (metrics first per frame, then the mean over frames; frames with nothing scored are skipped and counted).

>>> import numpy as np
>>> gt = np.array([[1.0, 2.0], [4.0, np.nan]])
>>> row = depth_metrics(2 * gt, gt, max_depth_m=10.0, median_scaling=True)
>>> round(row["scale"], 3), round(row["abs_rel"], 3), round(row["density_pct"], 1)
(0.5, 0.0, 100.0)
>>> round(depth_metrics(2 * gt, gt, max_depth_m=10.0)["abs_rel"], 3)
1.0
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np

from stereo_depth_ros.evaluation.masks import restrict_to_mask

DEFAULT_MIN_DEPTH_M = 1e-3
"""Lower end of the evaluated depth range in metres (monodepth2's and AF-SfMLearner's ``MIN_DEPTH = 1e-3``)."""

PROTOCOL_KEYS = ("abs_rel", "sq_rel", "rmse_m", "rmse_log", "delta1", "delta2", "delta3")
"""The monodepth2 / AF-SfMLearner seven, in their table order."""

REFINEMENT_KEYS = ("rmse_m", "mse_m2", "ard", "lrmse", "lrmse_si", "srd")
"""The refinement-CNN paper's six (RMSE, MSE, ARD, LRMSE, LRMSE-SI, SRD)."""

UNET_KEYS = ("mse_normalised", "ssim_normalised")
"""The light U-Net paper's two, on depth normalised to [0, 1]."""

METRIC_KEYS = ("scale",) + PROTOCOL_KEYS + tuple(k for k in REFINEMENT_KEYS if k not in PROTOCOL_KEYS) + UNET_KEYS \
    + ("density_pct",)
"""Every key of :func:`depth_metrics`'s result (besides ``median_scaling``, ``min_depth_m``, ``max_depth_m``)."""

LOWER_IS_BETTER = {"abs_rel", "sq_rel", "rmse_m", "rmse_log", "mse_m2", "ard", "lrmse", "lrmse_si", "srd",
                   "mse_normalised"}
"""Metrics where smaller is better (the deltas, SSIM and density are higher-is-better; scale is best at 1)."""


def _check_range(min_depth_m: float, max_depth_m: float | None) -> None:
    if not (isinstance(min_depth_m, (int, float)) and math.isfinite(min_depth_m) and min_depth_m > 0):
        raise ValueError(f"min_depth_m must be a finite depth > 0 in metres, got {min_depth_m!r}")
    if max_depth_m is not None:
        if not (isinstance(max_depth_m, (int, float)) and math.isfinite(max_depth_m)):
            raise ValueError(f"max_depth_m must be a finite depth in metres or None, got {max_depth_m!r}")
        if max_depth_m <= min_depth_m:
            raise ValueError(f"max_depth_m ({max_depth_m}) must be larger than min_depth_m ({min_depth_m})")


def _as_depth(array, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{what} depth must be (H, W), got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{what} depth must be a real-valued array, got dtype {array.dtype}")
    return array.astype(np.float64, copy=False)


def depth_valid_mask(gt: np.ndarray, min_depth_m: float = DEFAULT_MIN_DEPTH_M, max_depth_m: float | None = None,
                     mask: np.ndarray | None = None) -> np.ndarray:
    """``V``: (H, W) bool, True where the GT depth is finite, > 0 and inside ``[min_depth_m, max_depth_m]``.

    Args:
        gt: (H, W) GT depth in metres (any real dtype); NaN, inf and <= 0 are unknown.
        min_depth_m: lower end of the range in metres (> 0).
        max_depth_m: upper end in metres, or None for no upper bound.
        mask: optional (H, W) bool of pixels to evaluate.

    Raises:
        ValueError: if ``gt`` is not 2-D, the range is not valid, or ``mask`` has another shape.
    """
    _check_range(min_depth_m, max_depth_m)
    gt = _as_depth(gt, "GT")
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(gt) & (gt > 0) & (gt >= min_depth_m)
        if max_depth_m is not None:
            valid &= gt <= max_depth_m
    return restrict_to_mask(valid, mask, "GT depth")


def scored_depth_mask(pred: np.ndarray, gt: np.ndarray, min_depth_m: float = DEFAULT_MIN_DEPTH_M,
                      max_depth_m: float | None = None, mask: np.ndarray | None = None) -> np.ndarray:
    """``P``: (H, W) bool, GT-valid pixels (:func:`depth_valid_mask`) where ``pred`` is finite and > 0.

    Raises:
        ValueError: if ``pred`` and ``gt`` differ in shape or are not 2-D.
    """
    pred = _as_depth(pred, "predicted")
    gt = _as_depth(gt, "GT")
    if pred.shape != gt.shape:
        raise ValueError(f"predicted depth shape {pred.shape} differs from the GT depth's {gt.shape}")
    with np.errstate(invalid="ignore"):
        return depth_valid_mask(gt, min_depth_m, max_depth_m, mask) & np.isfinite(pred) & (pred > 0)


def median_scale(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> float:
    """Per-frame median scale ``median(gt[valid]) / median(pred[valid])`` (Zhou et al. 2017 sec. 4.1).

    Args:
        pred, gt: (H, W) depths (any consistent unit).
        valid: (H, W) bool; both ``pred`` and ``gt`` must be finite and > 0 there.

    Returns:
        float > 0; nan when ``valid`` is empty.

    >>> import numpy as np
    >>> median_scale(np.array([[1.0, 2.0, 3.0]]), np.array([[2.0, 4.0, 60.0]]), np.ones((1, 3), bool))
    2.0
    """
    valid = np.asarray(valid, dtype=bool)
    if not np.any(valid):
        return math.nan
    return float(np.median(np.asarray(gt, dtype=np.float64)[valid]) /
                 np.median(np.asarray(pred, dtype=np.float64)[valid]))


def _ssim_on_pixels(gt_normalised: np.ndarray, pred_normalised: np.ndarray, scored: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    smallest = min(scored.shape)
    if smallest < 3:
        return math.nan
    window = min(7, smallest if smallest % 2 else smallest - 1)
    a = np.where(scored, gt_normalised, 0.0)
    b = np.where(scored, pred_normalised, 0.0)
    _, ssim_map = structural_similarity(a, b, win_size=window, data_range=1.0, full=True)
    return float(ssim_map[scored].mean())


def depth_metrics(pred: np.ndarray, gt: np.ndarray, min_depth_m: float = DEFAULT_MIN_DEPTH_M,
                  max_depth_m: float | None = None, median_scaling: bool = False,
                  mask: np.ndarray | None = None) -> dict:
    """Every metric of this module for one predicted depth map (formulas in the module docstring).

    Args:
        pred: (H, W) predicted depth in metres (any real dtype); NaN, inf and <= 0 = no prediction.
        gt: (H, W) GT depth in metres; NaN, inf and <= 0 = unknown.
        min_depth_m: lower end of the evaluated range (> 0, metres); GT below it is not scored and the prediction
            is clipped to it.
        max_depth_m: upper end (metres), or None to cap at this frame's largest GT-valid depth.
        median_scaling: multiply the prediction by the median scale ``s`` before scoring (scale-free models).
        mask: optional (H, W) bool of pixels to evaluate (e.g. non-occluded).

    Returns:
        dict with ``median_scaling`` (bool), ``min_depth_m`` and ``max_depth_m`` (the range used, floats; the cap
        is nan when the frame has no GT-valid pixel and no cap was given) and floats for every key of
        :data:`METRIC_KEYS`: ``scale`` (> 0), ``abs_rel``, ``sq_rel`` (m), ``rmse_m`` (m), ``rmse_log``,
        ``delta1..3`` (in [0, 1]), ``mse_m2`` (m^2), ``ard``, ``lrmse``, ``lrmse_si``, ``srd`` (m),
        ``mse_normalised`` (in [0, 1]), ``ssim_normalised`` (in [-1, 1]), ``density_pct`` (in [0, 100]).
        All nan when no pixel is scored (``density_pct`` 0 then, nan when there is no GT-valid pixel).

    Raises:
        ValueError: for shapes that differ or are not 2-D, a non-real dtype, or a range that is not
            ``0 < min_depth_m < max_depth_m`` (finite).

    >>> import numpy as np
    >>> gt = np.full((4, 4), 2.0)
    >>> row = depth_metrics(np.full((4, 4), 2.4), gt, max_depth_m=10.0)
    >>> round(row["abs_rel"], 3), round(row["ard"], 3), round(row["rmse_m"], 3), row["delta1"]
    (0.2, 0.167, 0.4, 1.0)
    """
    _check_range(min_depth_m, max_depth_m)
    pred = _as_depth(pred, "predicted")
    gt = _as_depth(gt, "GT")
    valid = depth_valid_mask(gt, min_depth_m, max_depth_m, mask)
    scored = scored_depth_mask(pred, gt, min_depth_m, max_depth_m, mask)
    if max_depth_m is None:
        max_depth_m = float(gt[valid].max()) if np.any(valid) else math.nan
        if max_depth_m <= min_depth_m:  # every GT-valid depth equals min_depth_m
            max_depth_m = float(np.nextafter(min_depth_m, math.inf))
    row: dict = {"median_scaling": bool(median_scaling), "min_depth_m": float(min_depth_m),
                 "max_depth_m": float(max_depth_m)}
    row.update({key: math.nan for key in METRIC_KEYS})
    valid_count = int(np.count_nonzero(valid))
    row["density_pct"] = float(100.0 * np.count_nonzero(scored) / valid_count) if valid_count else math.nan
    if not np.any(scored):
        return row

    g = gt[scored]
    p = pred[scored]
    scale = median_scale(p, g, np.ones(p.shape, dtype=bool))
    row["scale"] = scale
    if median_scaling:
        p = p * scale
    p = np.clip(p, min_depth_m, max_depth_m)

    difference = g - p
    squared = difference ** 2
    log_difference = np.log(p) - np.log(g)
    ratio = np.maximum(g / p, p / g)
    row["abs_rel"] = float(np.mean(np.abs(difference) / g))
    row["sq_rel"] = float(np.mean(squared / g))
    row["mse_m2"] = float(np.mean(squared))
    row["rmse_m"] = math.sqrt(row["mse_m2"])
    row["rmse_log"] = float(np.sqrt(np.mean(log_difference ** 2)))
    for k in (1, 2, 3):
        row[f"delta{k}"] = float(np.mean(ratio < 1.25 ** k))
    row["ard"] = float(np.mean(np.abs(difference) / p))
    row["lrmse"] = row["rmse_log"]
    row["lrmse_si"] = math.sqrt(max(float(np.mean(log_difference ** 2) - np.mean(log_difference) ** 2), 0.0))
    row["srd"] = float(np.mean(squared / p))

    span = max_depth_m - min_depth_m
    gt_normalised = np.zeros(gt.shape)
    pred_normalised = np.zeros(gt.shape)
    gt_normalised[scored] = (np.clip(g, min_depth_m, max_depth_m) - min_depth_m) / span
    pred_normalised[scored] = (p - min_depth_m) / span
    row["mse_normalised"] = float(np.mean((gt_normalised[scored] - pred_normalised[scored]) ** 2))
    row["ssim_normalised"] = _ssim_on_pixels(gt_normalised, pred_normalised, scored)
    return row


def constant_depth_like(gt: np.ndarray, min_depth_m: float = DEFAULT_MIN_DEPTH_M, max_depth_m: float | None = None,
                        mask: np.ndarray | None = None) -> np.ndarray:
    """The ``gt-mean`` baseline: (H, W) float32 filled with the mean GT-valid depth (metres) of this frame.

    A model that does not beat it on AbsRel and RMSE has learnt nothing about this frame's geometry.

    Returns:
        (H, W) float32; all NaN when the frame has no GT-valid pixel.

    >>> import numpy as np
    >>> constant_depth_like(np.array([[1.0, 3.0], [0.0, np.nan]]))
    array([[2., 2.],
           [2., 2.]], dtype=float32)
    """
    valid = depth_valid_mask(gt, min_depth_m, max_depth_m, mask)
    value = float(_as_depth(gt, "GT")[valid].mean()) if np.any(valid) else math.nan
    return np.full(np.asarray(gt).shape, value, dtype=np.float32)


def mean_over_frames(rows: Iterable[Mapping], keys: Sequence[str] = METRIC_KEYS) -> dict:
    """Average per-frame metric rows over frames (monodepth2: metrics per frame, then the mean of each metric).

    Frames whose value is nan (nothing scored) are left out of that metric's mean.

    Args:
        rows: per-frame dicts from :func:`depth_metrics` (or any dicts with the ``keys``).
        keys: which keys to average.

    Returns:
        ``{key: mean}`` for every key (nan when no frame has a value), plus ``frames`` (rows given) and
        ``frames_scored`` (rows with a finite ``abs_rel`` or, without that key, a finite value of the first key).

    >>> mean_over_frames([{"abs_rel": 0.1}, {"abs_rel": 0.3}, {"abs_rel": float("nan")}], keys=("abs_rel",))
    {'abs_rel': 0.2, 'frames': 3, 'frames_scored': 2}
    """
    rows = list(rows)
    result: dict = {}
    for key in keys:
        values = np.array([float(row[key]) for row in rows if row.get(key) is not None], dtype=np.float64)
        values = values[np.isfinite(values)]
        result[key] = float(values.mean()) if values.size else math.nan
    probe = "abs_rel" if "abs_rel" in keys else keys[0]
    result["frames"] = len(rows)
    result["frames_scored"] = sum(1 for row in rows
                                  if row.get(probe) is not None and math.isfinite(float(row[probe])))
    return result
