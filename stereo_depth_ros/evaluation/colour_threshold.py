"""``colour-threshold``: the classical baseline of instrument segmentation (pure NumPy and OpenCV).

Surgical instruments are grey metal or black plastic, tissue is red, pink or yellow: an instrument pixel has a low
HSV saturation. The baseline marks pixels with saturation <= ``saturation_max`` and value (brightness) within
``[value_min, value_max]`` (excluding the black border of endoscope images and specular highlights), then removes
specks by a morphological opening and closing with a ``kernel_px`` disc (scaled with the image width, given for a
1280-pixel-wide frame).

The parameters are chosen on the validation split only (:func:`fit_colour_threshold`: a grid search for the highest
mean per-image IoU; ``stereo-depth-ros fit-colour-threshold`` runs it), and the chosen ones are
:data:`DEFAULT_PARAMETERS`.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from stereo_depth_ros.images import check_image
from stereo_depth_ros.evaluation.segmentation_metrics import iou_dice


@dataclass(frozen=True)
class ColourThresholdParameters:
    """Thresholds of the baseline.

    Attributes:
        saturation_max: largest HSV saturation of an instrument pixel (OpenCV scale 0..255).
        value_min, value_max: brightness range of an instrument pixel (0..255).
        kernel_px: diameter of the opening/closing disc in pixels at 1280 px width (0 = none).
    """

    saturation_max: int = 60
    value_min: int = 30
    value_max: int = 250
    kernel_px: int = 9

    def __post_init__(self) -> None:
        for name in ("saturation_max", "value_min", "value_max"):
            if not 0 <= getattr(self, name) <= 255:
                raise ValueError(f"{name} must be in 0..255, got {getattr(self, name)}")
        if self.value_min > self.value_max:
            raise ValueError(f"value_min {self.value_min} exceeds value_max {self.value_max}")
        if self.kernel_px < 0:
            raise ValueError(f"kernel_px must be >= 0, got {self.kernel_px}")


# Chosen by `stereo-depth-ros fit-colour-threshold` on the validation split (Endoscapes val + the held-out robotic
# sequences endovis2015_robotic/test4, endovis2018_types/seq_10 and seq_13; 95 images at 320 px width): mean
# validation IoU 0.394 (see docs/segmentation.md).
DEFAULT_PARAMETERS = ColourThresholdParameters(saturation_max=60, value_min=20, value_max=255, kernel_px=21)


def colour_threshold_mask(image_bgr: np.ndarray, parameters: ColourThresholdParameters = DEFAULT_PARAMETERS
                          ) -> np.ndarray:
    """The baseline's instrument mask of one image.

    Args:
        image_bgr: (H, W, 3) uint8 BGR.
        parameters: the thresholds.

    Returns:
        (H, W) uint8, 1 = instrument.

    Raises:
        ValueError: unless the image is a non-empty (H, W, 3) uint8 array.

    Example:
        >>> grey_on_red = np.zeros((40, 40, 3), np.uint8); grey_on_red[:] = (40, 40, 200)
        >>> grey_on_red[10:30, 10:30] = 128
        >>> int(colour_threshold_mask(grey_on_red, ColourThresholdParameters(kernel_px=0)).sum())
        400
    """
    check_image(image_bgr)
    hsv = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2HSV)
    saturation, value = hsv[..., 1], hsv[..., 2]
    mask = ((saturation <= parameters.saturation_max) & (value >= parameters.value_min)
            & (value <= parameters.value_max)).astype(np.uint8)
    size = int(round(parameters.kernel_px * image_bgr.shape[1] / 1280))
    if size >= 2:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    return mask


class ColourThresholdSegmenter:
    """The baseline behind the segmentation estimators' interface: ``predict(image_bgr) -> {"mask": (H, W) uint8
    0/1}``; ``name = "colour-threshold"``, ``backend = "opencv"``."""

    name = "colour-threshold"
    backend = "opencv"
    task = "binary"

    def __init__(self, parameters: ColourThresholdParameters = DEFAULT_PARAMETERS) -> None:
        self.parameters = parameters

    def prepare(self, height: int, width: int) -> None:
        """Nothing to build (classical method)."""

    def predict(self, image_bgr: np.ndarray) -> dict:
        return {"mask": colour_threshold_mask(image_bgr, self.parameters)}


def fit_colour_threshold(samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                         saturation_max=(30, 45, 60, 80, 100), value_min=(0, 20, 40),
                         value_max=(200, 230, 255), kernel_px=(0, 9, 21)) -> tuple[ColourThresholdParameters, float]:
    """Grid search of the parameters with the highest mean per-image IoU.

    Args:
        samples: ``(image_bgr (H, W, 3) uint8, truth (H, W) bool, valid (H, W) bool)`` of the validation split
            (never the test sets).
        saturation_max, value_min, value_max, kernel_px: the values tried.

    Returns:
        ``(best parameters, their mean IoU)``.

    Raises:
        ValueError: for no sample.
    """
    if not samples:
        raise ValueError("fit_colour_threshold needs validation samples")
    best, best_score = None, -1.0
    for s_max, v_min, v_max, kernel in itertools.product(saturation_max, value_min, value_max, kernel_px):
        if v_min > v_max:
            continue
        parameters = ColourThresholdParameters(s_max, v_min, v_max, kernel)
        score = float(np.mean([iou_dice(colour_threshold_mask(image, parameters).astype(bool), truth, valid)[0]
                               for image, truth, valid in samples]))
        if score > best_score:
            best, best_score = parameters, score
    return best, best_score


def parameters_dict(parameters: ColourThresholdParameters) -> dict:
    """The parameters as a plain dict (for JSON)."""
    return asdict(parameters)
