"""The interfaces every model of this package offers: :class:`Estimator` and, for stereo, :class:`StereoEstimator`.

Every registered model (:mod:`stereo_depth_ros.models.registry`) is an :class:`Estimator`: it names itself and its
backend, turns its inputs into a dict of named outputs (:meth:`Estimator.predict`) and can build its backend for an
input size before the first frame (:meth:`Estimator.prepare`). Stereo methods, network or classical, add
:meth:`StereoEstimator.estimate` (one disparity map per stage), their disparity range and their valid window, so
callers (the node, evaluation, benchmarks) never need to know which method they run.
"""

from __future__ import annotations

import abc
import math

import numpy as np

from stereo_depth_ros.images import check_stereo_pair

__all__ = ["Estimator", "StereoEstimator", "check_stereo_pair", "resolve_stage", "DISPARITY_STAGES"]

DISPARITY_STAGES = "disparity-stages"  # the output kind of a stereo estimator (registry.OUTPUT_KINDS)


class Estimator(abc.ABC):
    """A model behind one interface, whatever its family and backend.

    Attributes:
        name: the registered model name ("coarse-to-fine", "sgbm"), used in tables, JSON and logs.
        backend: what runs it: "torch", "onnx" (onnxruntime) or "opencv".
    """

    name: str
    backend: str

    @property
    def spec(self):
        """The :class:`~stereo_depth_ros.models.registry.ModelSpec` registered under :attr:`name`.

        Raises:
            ValueError: if no model is registered under this name.
        """
        from stereo_depth_ros.models.registry import model_spec

        return model_spec(self.name)

    @abc.abstractmethod
    def predict(self, *inputs) -> dict:
        """Run the model on its inputs (as its registry entry's input kind says).

        Returns:
            ``{output kind: value}``, one entry per output kind of the model's spec.
        """

    def prepare(self, height: int, width: int) -> None:
        """Build the backend for ``height`` x ``width`` inputs before the first frame (ONNX export or cache load,
        warm-up), so that the first real call does not stall. A no-op for classical methods.

        Raises:
            ValueError: for a size that is not positive.
        """
        check_image_size(height, width)


class StereoEstimator(Estimator):
    """A stereo method that turns a rectified pair into one disparity map per stage (coarse to fine).

    Disparities are left-view image disparities in pixels of the input resolution, ``x_left - x_right`` (positive
    for points in front of a parallel rig), float32, NaN where the method gives no value.
    """

    @property
    @abc.abstractmethod
    def num_stages(self) -> int:
        """How many maps :meth:`estimate` returns by default (1 for SGBM, 4 for the coarse-to-fine network)."""

    @property
    @abc.abstractmethod
    def max_disparity(self) -> int:
        """The search range in pixels of the input resolution (the network's ``max_disparity``, SGBM's
        ``num_disparities``)."""

    @abc.abstractmethod
    def estimate(self, left_bgr: np.ndarray, right_bgr: np.ndarray, max_stage: int | None = None
                 ) -> list[np.ndarray]:
        """Estimate the left disparity.

        Args:
            left_bgr, right_bgr: (H, W, 3) uint8 BGR rectified images of the same size (OpenCV order).
            max_stage: last stage to compute, ``0 .. num_stages - 1`` (None: the last one); earlier stops are
                cheaper on multi-stage methods.

        Returns:
            ``max_stage + 1`` arrays (H, W) float32, coarse (stage 0) to fine: left disparity in pixels, NaN where
            the method gives no value.

        Raises:
            ValueError: if the images are empty, not (H, W, 3) uint8, or differ in size, or for a stage outside
                ``0 .. num_stages - 1``.
        """

    @abc.abstractmethod
    def disparity_range(self) -> tuple[float, float]:
        """``(min_px, max_px)``: the smallest and largest disparity the method can return, pixels (as
        ``stereo_msgs/DisparityImage.min_disparity`` / ``max_disparity``)."""

    def valid_window(self, width: int, height: int, min_disparity: float = 0.0) -> tuple[int, int, int, int]:
        """The region of a ``width`` x ``height`` disparity image where the method can give a value.

        As ``stereo_msgs/DisparityImage.valid_window``: ``(x_offset, y_offset, width, height)`` in pixels. This
        default (for methods that answer everywhere, like the network) excludes only the band
        ``x < ceil(min_disparity)`` on the left, where no pixel with a disparity of at least ``min_disparity`` can
        have its match inside the right image.

        Args:
            width, height: image size in pixels (> 0).
            min_disparity: smallest disparity accepted as valid, pixels (>= 0).

        Returns:
            ``(x_offset, y_offset, window_width, window_height)``, ints, inside the image (a width of 0 when the band
            covers the whole image).

        Raises:
            ValueError: for a size that is not positive or a negative or non-finite ``min_disparity``.

        Example:
            >>> from stereo_depth_ros.models.registry import create_estimator
            >>> create_estimator("coarse-to-fine", backend="torch").valid_window(640, 480, min_disparity=2.5)
            (3, 0, 637, 480)
        """
        check_image_size(height, width)
        check_min_disparity(min_disparity)
        x_offset = min(math.ceil(min_disparity), width)
        return (x_offset, 0, width - x_offset, height)

    def estimate_with_confidence(self, left_bgr: np.ndarray, right_bgr: np.ndarray, max_stage: int | None = None,
                                 method: str | None = None) -> tuple[list[np.ndarray], np.ndarray]:
        """:meth:`estimate` plus a per-pixel confidence of the last map returned.

        This default (for methods without a confidence of their own, e.g. SGBM, whose uniqueness and left-right
        checks already remove the pixels they doubt) is 1 where the last disparity is finite and its match
        ``x - d`` lies inside the right image, 0 elsewhere. The network overrides it with a graded measure
        (:meth:`stereo_depth_ros.models.estimator.CoarseToFineEstimator.estimate_with_confidence`).

        Args:
            left_bgr, right_bgr, max_stage: as :meth:`estimate`.
            method: None or ``"valid"`` (the only measure of this default).

        Returns:
            ``(disparities, confidence)``: ``disparities`` as :meth:`estimate`; ``confidence`` (H, W) float32 in
            [0, 1], NaN-free, at the input resolution.

        Raises:
            ValueError: as :meth:`estimate`, or for another method.
        """
        if method not in (None, "valid"):
            raise ValueError(f"{self.name} offers the confidence method 'valid' only, got {method!r}")
        from stereo_depth_ros.models.confidence import matchable_mask

        disparities = self.estimate(left_bgr, right_bgr, max_stage)
        return disparities, matchable_mask(disparities[-1]).astype(np.float32)

    def predict(self, left_bgr: np.ndarray, right_bgr: np.ndarray) -> dict:
        """``{"disparity-stages": estimate(left_bgr, right_bgr)}`` (see :meth:`estimate`)."""
        return {DISPARITY_STAGES: self.estimate(left_bgr, right_bgr)}


def resolve_stage(max_stage: int | None, stages: int, name: str) -> int:
    """The last stage to run for a ``max_stage`` argument of :meth:`StereoEstimator.estimate`.

    Args:
        max_stage: None (the last stage, ``stages - 1``) or an int in ``0 .. stages - 1``.
        stages: how many stages the method has.
        name: the method's name, for the error message.

    Raises:
        ValueError: for a stage outside ``0 .. stages - 1`` or not an integer.

    Example:
        >>> resolve_stage(None, 4, "coarse-to-fine"), resolve_stage(1, 4, "coarse-to-fine")
        (3, 1)
    """
    if max_stage is None:
        return stages - 1
    if isinstance(max_stage, bool) or not isinstance(max_stage, (int, np.integer)) or not 0 <= max_stage < stages:
        raise ValueError(f"max_stage must be in 0..{stages - 1} for {name}, got {max_stage!r}")
    return int(max_stage)


def check_image_size(height: int, width: int) -> None:
    """Raise ValueError unless ``height`` and ``width`` are positive integers (pixels)."""
    for label, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"image {label} must be a positive number of pixels, got {value!r}")


def check_min_disparity(min_disparity: float) -> None:
    """Raise ValueError unless ``min_disparity`` is a finite number >= 0 (pixels)."""
    if not (isinstance(min_disparity, (int, float, np.floating, np.integer)) and math.isfinite(min_disparity)
            and min_disparity >= 0):
        raise ValueError(f"min_disparity must be a finite number of pixels >= 0, got {min_disparity!r}")
