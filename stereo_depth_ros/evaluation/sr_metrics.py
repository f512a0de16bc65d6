"""Super-resolution metrics as iPASSR reports them: PSNR on RGB in [0, 1] (no Y channel) and SSIM, for the left view,
the right view and their mean ``(left + right) / 2`` (Wang et al., "Symmetric Parallax Attention for Stereo Image
Super-Resolution", CVPRW 2021, section 4.1). Pure NumPy (SSIM from scikit-image).

PSNR = ``10 log10(1 / MSE)`` with MSE over every pixel and channel of images scaled to [0, 1]; identical images
give ``inf``. SSIM: ``skimage.metrics.structural_similarity`` on the RGB image in [0, 1] (``channel_axis=-1``,
``data_range=1``, 7x7 uniform window: scikit-image's defaults), the mean over the channels.

Example:
    >>> a = np.zeros((4, 4, 3), np.uint8)
    >>> psnr(a, a)
    inf
    >>> b = np.full((4, 4, 3), 51, np.uint8)  # error 0.2 everywhere: MSE 0.04, PSNR 10 log10(25)
    >>> round(psnr(a, b), 4)
    13.9794
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["psnr", "ssim", "pair_metrics", "to_unit_range"]


def to_unit_range(image: np.ndarray) -> np.ndarray:
    """An (H, W, 3) image as float64 in [0, 1]: uint8 divided by 255, float taken as it is.

    Raises:
        ValueError: for an image that is not (H, W, 3) uint8 or float, or is empty.
    """
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise ValueError(f"expected a non-empty (H, W, 3) image, got {getattr(image, 'shape', type(image))}")
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    if np.issubdtype(image.dtype, np.floating):
        return image.astype(np.float64)
    raise ValueError(f"expected a uint8 or float image, got {image.dtype}")


def _check_same(estimate: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = to_unit_range(estimate), to_unit_range(reference)
    if a.shape != b.shape:
        raise ValueError(f"estimate and reference differ in size: {a.shape} vs {b.shape}")
    return a, b


def psnr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB of an (H, W, 3) image against the reference, both uint8 or float in [0, 1]; ``inf`` if equal.

    Raises:
        ValueError: for images of different sizes or not (H, W, 3).
    """
    a, b = _check_same(estimate, reference)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


def ssim(estimate: np.ndarray, reference: np.ndarray) -> float:
    """SSIM of an (H, W, 3) image against the reference (module docstring), in [-1, 1]; 1 if equal.

    Raises:
        ValueError: for images of different sizes, not (H, W, 3), or smaller than 7x7 pixels.
    """
    from skimage.metrics import structural_similarity

    a, b = _check_same(estimate, reference)
    if min(a.shape[:2]) < 7:
        raise ValueError(f"SSIM needs images of at least 7x7 pixels, got {a.shape[1]}x{a.shape[0]}")
    return float(structural_similarity(a, b, channel_axis=-1, data_range=1.0))


def pair_metrics(left: np.ndarray, right: np.ndarray, left_reference: np.ndarray, right_reference: np.ndarray
                 ) -> dict[str, float]:
    """PSNR (dB) and SSIM of a super-resolved pair against the HR pair.

    Returns:
        ``psnr_left_db``, ``psnr_right_db``, ``psnr_db`` (their mean), ``ssim_left``, ``ssim_right``, ``ssim``
        (their mean).

    Raises:
        ValueError: as :func:`psnr` and :func:`ssim`.
    """
    psnr_left, psnr_right = psnr(left, left_reference), psnr(right, right_reference)
    ssim_left, ssim_right = ssim(left, left_reference), ssim(right, right_reference)
    return {"psnr_db": (psnr_left + psnr_right) / 2, "ssim": (ssim_left + ssim_right) / 2,
            "psnr_left_db": psnr_left, "psnr_right_db": psnr_right, "ssim_left": ssim_left, "ssim_right": ssim_right}
