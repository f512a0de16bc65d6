"""Segmentation metrics: per-image IoU and Dice (binary and multi-class), and their mean and standard deviation.

Definitions as in the EndoVis 2017 robotic instrument segmentation evaluation used by Shvets et al. (2018) and
paper 003's table: per image, ``IoU = |P n T| / |P u T|`` and ``Dice = 2 |P n T| / (|P| + |T|)``; an image whose
truth and prediction are both empty scores 1 (nothing to find, nothing found). Multi-class: per image, the mean over
the instrument classes (background excluded) present in the truth or the prediction; an image where neither has any
instrument class scores 1. A set's score is the mean and the (population) standard deviation over its images.
Pure NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _check(prediction: np.ndarray, truth: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction {prediction.shape} and truth {truth.shape} must have one shape")
    if valid is None:
        return np.ones(truth.shape, bool)
    if valid.shape != truth.shape:
        raise ValueError(f"valid mask {valid.shape} must have the truth's shape {truth.shape}")
    return valid.astype(bool)


def iou_dice(prediction: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None) -> tuple[float, float]:
    """Binary IoU and Dice of one image.

    Args:
        prediction, truth: (H, W) bool (or 0/1) masks, instrument = True.
        valid: optional (H, W) bool, pixels that count (False = no label, e.g. Endoscapes' 255).

    Returns:
        ``(iou, dice)`` floats in [0, 1]; ``(1.0, 1.0)`` when both masks are empty on the valid pixels.

    Raises:
        ValueError: for shapes that differ.

    Example:
        >>> t = np.array([[1, 1, 0, 0]], bool); p = np.array([[1, 0, 1, 0]], bool)
        >>> iou_dice(p, t)
        (0.3333333333333333, 0.5)
        >>> iou_dice(np.zeros((2, 2), bool), np.zeros((2, 2), bool))
        (1.0, 1.0)
    """
    valid = _check(prediction, truth, valid)
    prediction = prediction.astype(bool) & valid
    truth = truth.astype(bool) & valid
    intersection = int(np.count_nonzero(prediction & truth))
    predicted, true = int(np.count_nonzero(prediction)), int(np.count_nonzero(truth))
    union = predicted + true - intersection
    if union == 0:
        return 1.0, 1.0
    return intersection / union, 2.0 * intersection / (predicted + true)


def multiclass_iou_dice(prediction: np.ndarray, truth: np.ndarray, classes: int,
                        valid: np.ndarray | None = None) -> tuple[float, float]:
    """Mean IoU and Dice over the instrument classes ``1..classes-1`` present in the truth or the prediction.

    Args:
        prediction, truth: (H, W) integer class ids (0 = background).
        classes: number of classes including background.
        valid: optional (H, W) bool of the pixels that count.

    Returns:
        ``(iou, dice)``; ``(1.0, 1.0)`` when no instrument class appears in either.

    Raises:
        ValueError: for shapes that differ or ``classes`` < 2.

    Example:
        >>> t = np.array([[1, 1, 2, 0]]); p = np.array([[1, 1, 1, 0]])
        >>> iou_dice_pair = multiclass_iou_dice(p, t, 3)
        >>> [round(v, 4) for v in iou_dice_pair]  # class 1: 2/3, 0.8; class 2: 0, 0
        [0.3333, 0.4]
    """
    valid = _check(prediction, truth, valid)
    if classes < 2:
        raise ValueError(f"classes must be >= 2 (background and at least one instrument class), got {classes}")
    scores = []
    for index in range(1, classes):
        predicted, true = (prediction == index) & valid, (truth == index) & valid
        if predicted.any() or true.any():
            scores.append(iou_dice(predicted, true))
    if not scores:
        return 1.0, 1.0
    return float(np.mean([s[0] for s in scores])), float(np.mean([s[1] for s in scores]))


@dataclass
class SetScore:
    """Mean and standard deviation of per-image scores of one set.

    Attributes:
        iou_mean, iou_std, dice_mean, dice_std: in [0, 1] (population standard deviation).
        images: number of images.
    """

    iou_mean: float
    iou_std: float
    dice_mean: float
    dice_std: float
    images: int


def summarise(per_image: list[tuple[float, float]]) -> SetScore:
    """Mean and standard deviation of per-image ``(iou, dice)`` pairs.

    Raises:
        ValueError: for an empty list.

    Example:
        >>> s = summarise([(1.0, 1.0), (0.5, 0.6)])
        >>> s.iou_mean, s.iou_std, s.images
        (0.75, 0.25, 2)
    """
    if not per_image:
        raise ValueError("no image to summarise")
    values = np.asarray(per_image, np.float64)
    return SetScore(float(values[:, 0].mean()), float(values[:, 0].std()), float(values[:, 1].mean()),
                    float(values[:, 1].std()), len(per_image))
