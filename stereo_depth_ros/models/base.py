"""The interface every disparity method in this package offers (network or classical)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class DisparityEstimator(Protocol):
    """A stereo method that turns a rectified pair into one or more disparity maps.

    Attributes:
        name: short method name used in tables and JSON ("coarse-to-fine", "sgbm").
        num_stages: how many maps :meth:`estimate` returns (1 for SGBM, 4 for the coarse-to-fine network).
    """

    name: str
    num_stages: int

    def estimate(self, left_bgr: np.ndarray, right_bgr: np.ndarray) -> list[np.ndarray]:
        """Estimate the left disparity.

        Args:
            left_bgr, right_bgr: (H, W, 3) uint8 BGR rectified images of the same size (OpenCV order).

        Returns:
            One (H, W) float32 array per stage, coarse to fine: left disparity in pixels (positive,
            ``x_left - x_right``), NaN where the method gives no value.

        Raises:
            ValueError: if the images are empty, not (H, W, 3) uint8, or differ in size.
        """
        ...


def check_stereo_pair(left_bgr: np.ndarray, right_bgr: np.ndarray) -> None:
    """Validate a rectified BGR pair for :meth:`DisparityEstimator.estimate`.

    Raises:
        ValueError: naming the problem (type, shape, dtype, empty, size mismatch).
    """
    for side, image in (("left", left_bgr), ("right", right_bgr)):
        if not isinstance(image, np.ndarray):
            raise ValueError(f"{side} image must be a numpy array, got {type(image).__name__}")
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{side} image must be (H, W, 3) BGR, got shape {image.shape}")
        if image.dtype != np.uint8:
            raise ValueError(f"{side} image must be uint8, got {image.dtype}")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"{side} image is empty (shape {image.shape})")
    if left_bgr.shape != right_bgr.shape:
        raise ValueError(f"left and right images differ in size: {left_bgr.shape[:2]} vs {right_bgr.shape[:2]}")
