"""Per-pixel stereo confidence maps computed from a disparity (NumPy/OpenCV, no network).

A confidence map is (H, W) float32 in [0, 1], at the disparity's resolution, higher = more likely correct, 0 where
the disparity is invalid (NaN or inf, or its match ``x - d`` falls outside the right image). The network's own
cost-volume confidence is :func:`stereo_depth_ros.models.coarse_to_fine.peak_probability`; the estimator
(:meth:`stereo_depth_ros.models.estimator.CoarseToFineEstimator.estimate_with_confidence`) combines them. Which one
the package uses by default, and why, is measured in docs/stereo.md ("Confidence").
:func:`apply_confidence_threshold` is what the stereo node's ``confidence_threshold`` parameter does.
"""

from __future__ import annotations

import cv2
import numpy as np

from stereo_depth_ros.images import check_stereo_pair

#: Scale of the photometric confidence ``exp(-error / scale)``, on the mean absolute colour difference in [0, 1].
PHOTOMETRIC_SCALE = 0.05
#: Box window (pixels, odd) over which the photometric error is averaged before the exponential.
PHOTOMETRIC_WINDOW = 5
#: Scale of the left-right confidence ``exp(-|d_left - d_right| / scale)``, pixels.
LEFT_RIGHT_SCALE_PX = 1.0


def _check_disparity(disparity: np.ndarray, shape: tuple[int, int], name: str = "disparity") -> np.ndarray:
    disparity = np.asarray(disparity)
    if disparity.ndim != 2 or disparity.shape != tuple(shape):
        raise ValueError(f"{name} must be (H, W) = {tuple(shape)} like the images, got shape {disparity.shape}")
    if not np.issubdtype(disparity.dtype, np.floating):
        raise ValueError(f"{name} must be a float array (pixels, NaN = invalid), got dtype {disparity.dtype}")
    return disparity.astype(np.float32, copy=False)


def matchable_mask(disparity: np.ndarray) -> np.ndarray:
    """Pixels whose disparity is a value: finite, > 0 (0 has no finite depth; the node and the evaluation treat it
    as no value) and with its match ``x - d`` inside the right image.

    Args:
        disparity: (H, W) float left disparity in pixels, NaN = invalid.

    Returns:
        (H, W) bool.

    Example:
        >>> matchable_mask(np.array([[0.0, 2.0, np.nan, 1.0, 3.5]], np.float32)).tolist()
        [[False, False, False, True, True]]
    """
    disparity = np.asarray(disparity, dtype=np.float32)
    columns = np.arange(disparity.shape[-1], dtype=np.float32)
    with np.errstate(invalid="ignore"):
        return np.isfinite(disparity) & (disparity > 0) & (columns - disparity >= 0)


def finalize_confidence(confidence: np.ndarray, disparity: np.ndarray) -> np.ndarray:
    """Clip a confidence map to [0, 1], replace NaN by 0 and set 0 where :func:`matchable_mask` is False.

    Args:
        confidence: (H, W) float confidence (any real values; NaN allowed).
        disparity: (H, W) float left disparity in pixels it belongs to.

    Returns:
        (H, W) float32 in [0, 1], NaN-free (a new array).

    Raises:
        ValueError: if the shapes differ.
    """
    disparity = _check_disparity(disparity, np.shape(confidence))
    result = np.nan_to_num(np.asarray(confidence, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    np.clip(result, 0.0, 1.0, out=result)
    result[~matchable_mask(disparity)] = 0.0
    return result


def _sample_rows(image: np.ndarray, disparity: np.ndarray) -> np.ndarray:
    """``image`` sampled at ``(x - disparity, y)`` (bilinear, border replicated), as ``cv2.remap`` does it."""
    height, width = disparity.shape
    if not np.isfinite(disparity).all():
        disparity = np.nan_to_num(disparity, nan=0.0, posinf=0.0, neginf=0.0)
    map_x = np.arange(width, dtype=np.float32)[None, :] - disparity
    map_y = np.repeat(np.arange(height, dtype=np.float32)[:, None], width, axis=1)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def photometric_confidence(left_bgr: np.ndarray, right_bgr: np.ndarray, disparity: np.ndarray,
                           scale: float = PHOTOMETRIC_SCALE, window: int = PHOTOMETRIC_WINDOW) -> np.ndarray:
    """Photometric confidence ``exp(-e / scale)`` of a left disparity.

    ``e`` is the mean over the three colour channels of ``|left - warp(right, d)|`` (intensities in [0, 1], the
    right image sampled at ``x - d`` bilinearly), averaged over a ``window`` x ``window`` box. A wrong disparity, or
    a pixel the right camera does not see (occlusion), reconstructs the left image badly; on uniform texture a wrong
    disparity can still reconstruct well, which this measure cannot see (the cost-volume peak can). The
    reconstruction error is the self-supervised training signal (Godard et al., CVPR 2017, eq. 2, L1 term).

    Args:
        left_bgr, right_bgr: (H, W, 3) uint8 BGR rectified pair.
        disparity: (H, W) float left disparity in pixels, NaN = invalid.
        scale: error giving confidence ``1/e`` (> 0, intensity units in [0, 1]).
        window: odd box size in pixels (>= 1).

    Returns:
        (H, W) float32 in [0, 1], 0 where the disparity is invalid (:func:`finalize_confidence`).

    Raises:
        ValueError: for images that are not a same-size uint8 BGR pair, a disparity of another shape, a scale
            <= 0 or an even or non-positive window.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> right = rng.integers(0, 256, (8, 16, 3), dtype=np.uint8)
        >>> left = np.roll(right, 2, axis=1)          # true disparity 2 px
        >>> good = photometric_confidence(left, right, np.full((8, 16), 2.0, np.float32))
        >>> bad = photometric_confidence(left, right, np.full((8, 16), 5.0, np.float32))
        >>> bool(good[:, 6:].mean() > 0.9 > 0.2 > bad[:, 6:].mean())
        True
    """
    check_stereo_pair(left_bgr, right_bgr)
    disparity = _check_disparity(disparity, left_bgr.shape[:2])
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive intensity difference, got {scale}")
    if int(window) != window or window < 1 or window % 2 == 0:
        raise ValueError(f"window must be an odd number of pixels >= 1, got {window}")
    warped = _sample_rows(right_bgr, disparity)
    # Mean over the channels in [0, 1] (cv2.transform: one weighted sum per pixel, far faster than numpy's mean).
    error = cv2.transform(cv2.absdiff(left_bgr, warped).astype(np.float32), np.full((1, 3), 1.0 / 765.0, np.float32))
    if window > 1:
        error = cv2.blur(error, (int(window), int(window)), borderType=cv2.BORDER_REFLECT)
    return finalize_confidence(cv2.exp(error * np.float32(-1.0 / scale)), disparity)


def left_right_confidence(left_disparity: np.ndarray, right_disparity: np.ndarray,
                          scale_px: float = LEFT_RIGHT_SCALE_PX) -> np.ndarray:
    """Left-right consistency confidence ``exp(-|d_L(x) - d_R(x - d_L(x))| / scale_px)``.

    ``d_R`` is the disparity of the right view (positive, the left match of right pixel ``x`` at ``x + d_R``),
    e.g. the same method run on the mirrored, swapped pair. A left pixel whose match points back to it is
    consistent; occluded and mismatched pixels are not (the left-right check of Hirschmueller 2008, section 3.4,
    as a soft score).

    Args:
        left_disparity, right_disparity: (H, W) float disparities in pixels, NaN = invalid.
        scale_px: difference in pixels giving confidence ``1/e`` (> 0).

    Returns:
        (H, W) float32 in [0, 1]; 0 where either disparity is invalid at the pixel or its match.

    Raises:
        ValueError: for maps of different shapes or a scale <= 0.

    Example:
        >>> d = np.full((2, 6), 1.0, np.float32)
        >>> left_right_confidence(d, d)[0].round(2).tolist()   # x = 0: its match x - 1 is outside
        [0.0, 1.0, 1.0, 1.0, 1.0, 1.0]
        >>> bool(left_right_confidence(d, d + 3.0)[0, 1] < 0.05)
        True
    """
    left_disparity = _check_disparity(left_disparity, np.shape(left_disparity), "left_disparity")
    right_disparity = _check_disparity(right_disparity, left_disparity.shape, "right_disparity")
    if not (np.isfinite(scale_px) and scale_px > 0):
        raise ValueError(f"scale_px must be a positive number of pixels, got {scale_px}")
    right_valid = np.isfinite(right_disparity).astype(np.float32)
    sampled = _sample_rows(np.nan_to_num(right_disparity, nan=0.0, posinf=0.0, neginf=0.0), left_disparity)
    sampled_valid = _sample_rows(right_valid, left_disparity) > 0.999
    with np.errstate(invalid="ignore"):
        confidence = np.exp(-np.abs(left_disparity - sampled) / np.float32(scale_px))
    confidence[~sampled_valid] = 0.0
    return finalize_confidence(confidence, left_disparity)


def apply_confidence_threshold(disparity: np.ndarray, confidence: np.ndarray, threshold: float) -> np.ndarray:
    """The disparity with NaN (invalid) where ``confidence < threshold``.

    Args:
        disparity: (H, W) float32 disparity in pixels, NaN = invalid.
        confidence: (H, W) float32 confidence in [0, 1] of that disparity.
        threshold: in [0, 1]; 0 changes nothing.

    Returns:
        A new (H, W) float32 array (the input is not changed).

    Raises:
        ValueError: for maps of different shapes or a threshold outside [0, 1].

    Example:
        >>> apply_confidence_threshold(np.array([[1.0, 2.0]], np.float32), np.array([[0.2, 0.9]], np.float32), 0.5)
        array([[nan,  2.]], dtype=float32)
    """
    if np.shape(confidence) != np.shape(disparity):
        raise ValueError(f"confidence {np.shape(confidence)} and disparity {np.shape(disparity)} differ in shape")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"confidence threshold must be in [0, 1], got {threshold}")
    result = np.array(disparity, dtype=np.float32, copy=True)
    result[np.asarray(confidence) < np.float32(threshold)] = np.nan
    return result
