"""Metrics of NIR-to-RGB translation, masked to the valid area of the NIR/RGB alignment, and the per-channel linear
colour baseline. Pure NumPy (SSIM's map from scikit-image).

The colourisation metrics of the NIR-colourisation challenge (VCIP 2020 Grand Challenge on NIR image colourisation):
PSNR and SSIM on RGB in [0, 1], and the mean angular error between per-pixel RGB vectors in degrees, here all
restricted to a boolean valid mask (where the affinely warped real RGB has data):

- masked PSNR = ``10 log10(1 / MSE)``, MSE over the valid pixels and the 3 channels; ``inf`` for equal images.
- masked SSIM: scikit-image's ``structural_similarity`` map (7x7 uniform window, ``data_range=1``, per channel, the
  parameters of :func:`stereo_depth_ros.evaluation.sr_metrics.ssim`) with the invalid pixels of both images set to
  0, averaged over the valid pixels and the channels.
- angular error: ``arccos(<e, r> / (|e| |r|))`` in degrees per pixel (0 = same hue and saturation, whatever the
  brightness; a grey pixel against a saturated one is far), averaged over the valid pixels where both vectors are
  non-zero (|v| > 1e-6; a black pixel has no colour direction).

Baseline ``linear-colour``: each RGB channel an affine function of the NIR intensity, ``c = a_c * nir + b_c``,
fitted by least squares on aligned training pairs (:func:`fit_linear_colour`, :func:`apply_linear_colour`).

Example:
    >>> grey = np.full((8, 8, 3), 128, np.uint8)
    >>> red = np.zeros((8, 8, 3), np.uint8); red[..., 2] = 200   # BGR: pure red
    >>> round(angular_error_deg(grey, red), 2)                  # angle between (1, 1, 1) and (1, 0, 0)
    54.74
"""

from __future__ import annotations

import math

import numpy as np

from stereo_depth_ros.evaluation.sr_metrics import to_unit_range

__all__ = ["masked_psnr", "masked_ssim", "angular_error_deg", "colour_metrics", "fit_linear_colour",
           "apply_linear_colour", "check_mask"]

NORM_EPSILON = 1e-6


def check_mask(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """``mask`` as (H, W) bool for images of ``shape`` (None: every pixel).

    Raises:
        ValueError: for a mask of another shape or with no pixel set.
    """
    if mask is None:
        return np.ones(shape, bool)
    mask = np.asarray(mask)
    if mask.shape != tuple(shape):
        raise ValueError(f"valid mask shape {mask.shape} differs from the image size {tuple(shape)}")
    mask = mask.astype(bool)
    if not mask.any():
        raise ValueError("the valid mask has no pixel set")
    return mask


def _pair(estimate: np.ndarray, reference: np.ndarray, mask: np.ndarray | None):
    a, b = to_unit_range(estimate), to_unit_range(reference)
    if a.shape != b.shape:
        raise ValueError(f"estimate and reference differ in size: {a.shape} vs {b.shape}")
    return a, b, check_mask(mask, a.shape[:2])


def masked_psnr(estimate: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB over the valid pixels of (H, W, 3) images (uint8, or float in [0, 1]); ``inf`` if they agree there.

    Raises:
        ValueError: for images that are not (H, W, 3), differ in size, or a mask that does not fit or is empty.

    Example:
        >>> a = np.zeros((2, 2, 3), np.uint8); b = a.copy(); b[0, 0] = 255   # one wrong pixel, masked out
        >>> masked_psnr(a, b, np.array([[False, True], [True, True]]))
        inf
        >>> round(masked_psnr(a, b), 3)                                        # MSE 1/4: 10 log10(4)
        6.021
    """
    a, b, mask = _pair(estimate, reference, mask)
    mse = float(np.mean((a[mask] - b[mask]) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


def masked_ssim(estimate: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """SSIM of (H, W, 3) images over the valid pixels (module docstring), in [-1, 1]; 1 for equal images.

    Raises:
        ValueError: as :func:`masked_psnr`, or for images smaller than 7x7 pixels.
    """
    from skimage.metrics import structural_similarity

    a, b, mask = _pair(estimate, reference, mask)
    if min(a.shape[:2]) < 7:
        raise ValueError(f"SSIM needs images of at least 7x7 pixels, got {a.shape[1]}x{a.shape[0]}")
    a = np.where(mask[..., None], a, 0.0)
    b = np.where(mask[..., None], b, 0.0)
    _, ssim_map = structural_similarity(a, b, channel_axis=-1, data_range=1.0, full=True)
    return float(ssim_map[mask].mean())


def angular_error_deg(estimate: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean angle in degrees, in [0, 90] for non-negative colours, between the per-pixel RGB vectors of
    (H, W, 3) images (module docstring); nan when no valid pixel has two non-zero vectors.

    Raises:
        ValueError: as :func:`masked_psnr`.

    Example:
        >>> a = np.zeros((1, 2, 3), np.uint8); a[0, 0] = (0, 0, 100); a[0, 1] = (0, 100, 0)
        >>> b = np.zeros((1, 2, 3), np.uint8); b[0, 0] = (0, 0, 200); b[0, 1] = (0, 0, 100)
        >>> angular_error_deg(a, b)   # pixel 0: same direction (0 deg), pixel 1: red vs green (90 deg)
        45.0
    """
    a, b, mask = _pair(estimate, reference, mask)
    a, b = a[mask], b[mask]
    norm_a, norm_b = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    usable = (norm_a > NORM_EPSILON) & (norm_b > NORM_EPSILON)
    if not usable.any():
        return math.nan
    cosine = np.sum(a[usable] * b[usable], axis=1) / (norm_a[usable] * norm_b[usable])
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))).mean())


def colour_metrics(estimate: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """``{"psnr_db", "ssim", "angular_error_deg"}`` of an (H, W, 3) estimate against the reference, masked.

    Raises:
        ValueError: as :func:`masked_ssim`.
    """
    return {"psnr_db": masked_psnr(estimate, reference, mask), "ssim": masked_ssim(estimate, reference, mask),
            "angular_error_deg": angular_error_deg(estimate, reference, mask)}


def fit_linear_colour(nir_images, rgb_images, masks=None) -> np.ndarray:
    """Least-squares fit of each colour channel as an affine function of the NIR intensity.

    Args:
        nir_images: sequence of (H, W) uint8 NIR images.
        rgb_images: sequence of (H, W, 3) uint8 BGR images aligned to them (same sizes).
        masks: optional sequence of (H, W) bool valid masks (None: every pixel).

    Returns:
        (3, 2) float64: row c = (a_c, b_c) of channel c in BGR order, in [0, 1] units: ``c = a_c * nir + b_c``.

    Raises:
        ValueError: for no images, different counts or sizes, or no pixel to fit.

    Example:
        >>> nir = np.array([[0, 255]], np.uint8)
        >>> rgb = np.array([[[10, 0, 255], [10, 255, 0]]], np.uint8)   # B constant, G = nir, R = 1 - nir
        >>> (np.round(fit_linear_colour([nir], [rgb]), 3) + 0.0).tolist()
        [[0.0, 0.039], [1.0, 0.0], [-1.0, 1.0]]
    """
    nir_images, rgb_images = list(nir_images), list(rgb_images)
    masks = [None] * len(nir_images) if masks is None else list(masks)
    if not nir_images or len(nir_images) != len(rgb_images) or len(masks) != len(nir_images):
        raise ValueError(f"need as many NIR images, RGB images and masks (>= 1), got {len(nir_images)}, "
                         f"{len(rgb_images)}, {len(masks)}")
    xs, ys = [], []
    for index, (nir, rgb, mask) in enumerate(zip(nir_images, rgb_images, masks)):
        nir, rgb = np.asarray(nir), np.asarray(rgb)
        if nir.ndim != 2 or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[:2] != nir.shape:
            raise ValueError(f"pair {index}: need (H, W) NIR and (H, W, 3) RGB of one size, got {nir.shape} and "
                             f"{rgb.shape}")
        mask = check_mask(mask, nir.shape)
        xs.append(nir[mask].astype(np.float64) / 255.0)
        ys.append(rgb[mask].astype(np.float64) / 255.0)
    x, y = np.concatenate(xs), np.concatenate(ys)
    design = np.stack([x, np.ones_like(x)], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    return coefficients.T


def apply_linear_colour(nir: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """(H, W) uint8 NIR -> (H, W, 3) uint8 BGR by the fit of :func:`fit_linear_colour` (rounded, clipped to 0..255).

    Raises:
        ValueError: for a NIR image that is not (H, W) or coefficients that are not (3, 2).
    """
    nir = np.asarray(nir)
    coefficients = np.asarray(coefficients, dtype=np.float64)
    if nir.ndim != 2:
        raise ValueError(f"NIR image must be (H, W), got {nir.shape}")
    if coefficients.shape != (3, 2):
        raise ValueError(f"linear colour coefficients must be (3, 2), got {coefficients.shape}")
    x = nir.astype(np.float64)[..., None] / 255.0
    colour = x * coefficients[:, 0] + coefficients[:, 1]
    return np.clip(np.round(colour * 255.0), 0, 255).astype(np.uint8)
