"""Datasets of rectified stereo pairs on disk for self-supervised training.

:class:`StereoFolderDataset` reads ``left/`` and ``right/`` folders with matching file names (the BDIS layout
``<set>/images_rectified/{left,right}/N.png`` is found automatically); other layouts plug in by subclassing and
overriding :meth:`StereoFolderDataset.find_pairs` (see :class:`ScaredKeyframeDataset`). Listing, exclusion lists,
caching and the per-item pipeline come from :class:`stereo_depth_ros.data.folder_dataset.ImageFolderDataset`.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from stereo_depth_ros.data.folder_dataset import ImageFolderDataset, Sample
from stereo_depth_ros.data.folder_dataset import path_in_list, read_pair_list  # noqa: F401  (re-exported)
from stereo_depth_ros.images import pair_stereo_folders, read_image_bgr


def black_border_mask(image_bgr: np.ndarray, threshold: int = 12, erode: int = 3) -> np.ndarray:
    """Mask of the active image area: False on near-black regions connected to the image border.

    Rectified endoscope frames (BDIS sets 20 and 21) carry a large black border; dark tissue inside the image is
    kept because only black regions that touch the border are removed.

    Args:
        image_bgr: (H, W, 3) uint8.
        threshold: grey level at or below which a pixel counts as black.
        erode: pixels to erode the active area by (the border's edge is blurred).

    Returns:
        (H, W) bool, True where the pixel is inside the active area.
    """
    grey = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    black = (grey <= threshold).astype(np.uint8)
    _, labels = cv2.connectedComponents(black, connectivity=4)
    border_labels = np.unique(np.concatenate((labels[0], labels[-1], labels[:, 0], labels[:, -1])))
    border_labels = border_labels[border_labels > 0]
    border = np.isin(labels, border_labels) & (black > 0)
    active = ~border
    if erode > 0:
        kernel = np.ones((2 * erode + 1, 2 * erode + 1), np.uint8)
        active = cv2.erode(active.astype(np.uint8), kernel).astype(bool)
    return active


class StereoFolderDataset(ImageFolderDataset):
    """Rectified stereo pairs from ``left/`` and ``right/`` folders with matching file names.

    Args:
        roots: folders; each is either a folder holding ``left/`` and ``right/``, or a BDIS set folder holding
            ``images_rectified/left`` and ``images_rectified/right``.
        crop: (height, width) random crop for training, or None for whole images.
        augment: random colour jitter (same for both views) and horizontal flip that swaps and mirrors the views.
        samples_per_epoch: length of the dataset (pairs are drawn cyclically), default the number of pairs.
        seed: seed of the augmentation random generator (per item: ``seed + index``), so a run is repeatable.
        scale_range: (min, max) zoom of the random crops (see :func:`random_crop`); (1, 1) = no zoom.
        shift_range: (min, max) disparity shift of the random crops in pixels (see :func:`random_crop`); (0, 0) =
            none.
        exclude: left-image paths (or path suffixes, e.g. ``bdis_invivo/6/images_rectified/left/201.png``) of pairs
            to leave out, such as held-out test pairs (see :func:`read_pair_list`).

    Items are dicts of ``left``, ``right``: (3, h, w) float32 RGB in [0, 1]; ``valid``: (1, h, w) float32 0/1 (0 on
    black borders of either view); ``name``: str (the left image's path).

    Raises:
        FileNotFoundError: if a root does not exist or has no pair layout, or no pair is left after the exclusion.
        ValueError: if a left image has no right partner or the reverse, a crop is larger than an image or not two
            positive integers, or ``shift_range`` has ``min > max``.
    """

    FIELDS = ("left", "right")

    def __init__(self, roots: list[str | Path] | str | Path, crop: tuple[int, int] | None = None,
                 augment: bool = False, samples_per_epoch: int | None = None, seed: int = 0,
                 scale_range: tuple[float, float] = (1.0, 1.0), exclude: list[str] | None = None,
                 shift_range: tuple[int, int] = (0, 0)) -> None:
        self.shift_range = check_shift_range(shift_range)  # before any file is read
        self.scale_range = scale_range
        super().__init__(roots, crop=crop, augment=augment, samples_per_epoch=samples_per_epoch, seed=seed,
                         exclude=exclude)

    @property
    def pairs(self) -> list[tuple[Path, Path]]:
        """The (left, right) image paths, in the order of the roots and then natural order of the names."""
        return self.samples

    def find_samples(self, root: Path) -> list[tuple[Path, Path]]:
        return self.find_pairs(root)

    def find_pairs(self, root: Path) -> list[tuple[Path, Path]]:
        """Return the (left, right) image paths under ``root``; override for other layouts."""
        for left_dir, right_dir in ((root / "left", root / "right"),
                                    (root / "images_rectified" / "left", root / "images_rectified" / "right")):
            if left_dir.is_dir() and right_dir.is_dir():
                return pair_stereo_folders(left_dir, right_dir)
        raise FileNotFoundError(f"{root} has neither left/ and right/ nor images_rectified/left and "
                                f"images_rectified/right folders")

    def sample_description(self) -> str:
        return "stereo pairs"

    def read_sample(self, index: int) -> Sample:
        """``left``, ``right``: (H, W, 3) uint8 BGR; ``valid``: (H, W) bool, False on the black border of either view.

        Raises:
            ValueError: if the two images differ in size (naming both), or a file cannot be decoded.
            FileNotFoundError: if a file has gone.
        """
        left_path, right_path = self.pairs[index]
        left, right = read_image_bgr(left_path), read_image_bgr(right_path)
        if left.shape != right.shape:
            raise ValueError(f"{left_path} and {right_path} differ in size: {left.shape} vs {right.shape}")
        return {"left": left, "right": right, "valid": black_border_mask(left) & black_border_mask(right)}

    def load_pair(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(left BGR, right BGR, valid mask) of pair ``index`` at full size, cached in memory."""
        sample = self.load_sample(index)
        return sample["left"], sample["right"], sample["valid"]

    def crop_sample(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """The zoomed, disparity-shifted random window of :func:`random_crop`."""
        left, right, valid = random_crop(sample["left"], sample["right"], sample["valid"], self.crop, rng,
                                         self.scale_range, self.shift_range)
        return {"left": left, "right": right, "valid": valid}

    def augment_sample(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """Colour jitter equal for both views and the view-swapping flip of :func:`augment_pair`."""
        left, right, valid = augment_pair(sample["left"], sample["right"], sample["valid"], rng)
        return {"left": left, "right": right, "valid": valid}


class ScaredKeyframeDataset(StereoFolderDataset):
    """The SCARED rectified keyframe layout: ``img_left/`` and ``img_right/`` with matching names."""

    def find_pairs(self, root: Path) -> list[tuple[Path, Path]]:
        if (root / "img_left").is_dir() and (root / "img_right").is_dir():
            return pair_stereo_folders(root / "img_left", root / "img_right")
        return super().find_pairs(root)


def check_shift_range(shift_range) -> tuple[int, int]:
    """``shift_range`` as ``(low, high)`` integer pixels, for :func:`random_crop`.

    Raises:
        ValueError: unless it is two numbers with ``low <= high``.
    """
    if len(shift_range) != 2 or shift_range[0] > shift_range[1]:
        raise ValueError(f"shift_range must be (low, high) pixels with low <= high, got {tuple(shift_range)}")
    return int(shift_range[0]), int(shift_range[1])


def random_crop(left: np.ndarray, right: np.ndarray, valid: np.ndarray, size: tuple[int, int],
                rng: np.random.Generator, scale_range: tuple[float, float] = (1.0, 1.0),
                shift_range: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random window of both views and the mask, resized to ``size`` = (height, width).

    With a scale ``s`` drawn log-uniformly from ``scale_range``, a window of ``size / s`` pixels is cut and resized
    to ``size``: the pair is zoomed by ``s`` and so are its disparities, which teaches the network disparities
    beyond those of the training set (in-vivo pairs have 20-50 px). The window is the one with the most valid
    pixels among 4 candidates, so crops of frames with a large black border still hold tissue.

    Disparity shift: with an integer ``t`` drawn uniformly from ``shift_range`` (pixels of the output crop), the
    right view's window starts ``round(t / s)`` pixels to the right of the left view's, which adds ``t`` to every
    disparity of the crop (``d' = x_left - x_right`` in window coordinates); a negative ``t`` shows the network
    disparities below those of the training set (far, dark background). The shift is reduced where the image is
    too narrow for both windows. The mask is that of both windows (a pixel counts only if valid in both).

    Raises:
        ValueError: if the crop is larger than the images (at the smallest scale), or ``shift_range`` is not
            ``(low, high)`` with ``low <= high``.
    """
    shift_range = check_shift_range(shift_range)
    h, w = left.shape[:2]
    ch, cw = size
    low, high = scale_range
    scale = float(np.exp(rng.uniform(np.log(low), np.log(high)))) if high > low else float(low)
    scale = max(scale, ch / h, cw / w)  # never cut a window larger than the image
    wh, ww = min(h, int(round(ch / scale))), min(w, int(round(cw / scale)))
    if (ch > h or cw > w) and scale_range == (1.0, 1.0):
        raise ValueError(f"crop {ch}x{cw} is larger than the image {h}x{w}")
    shift = 0
    if shift_range != (0, 0):
        shift = int(round(int(rng.integers(shift_range[0], shift_range[1] + 1)) * ww / cw))
        shift = max(-(w - ww), min(w - ww, shift))  # both windows must fit in the image
    low_x, high_x = max(0, -shift), w - ww - max(0, shift)  # left window x range so that x + shift fits too
    best = None
    for _ in range(4):
        y, x = int(rng.integers(0, h - wh + 1)), int(rng.integers(low_x, high_x + 1))
        score = (valid[y:y + wh, x:x + ww] & valid[y:y + wh, x + shift:x + shift + ww]).sum()
        if best is None or score > best[0]:
            best = (score, y, x)
    _, y, x = best
    rows = slice(y, y + wh)
    right = right[rows, x + shift:x + shift + ww]
    valid = valid[rows, x:x + ww] & valid[rows, x + shift:x + shift + ww]
    left = left[rows, x:x + ww]
    if (wh, ww) != (ch, cw):
        left = cv2.resize(left, (cw, ch), interpolation=cv2.INTER_LINEAR)
        right = cv2.resize(right, (cw, ch), interpolation=cv2.INTER_LINEAR)
        valid = cv2.resize(valid.astype(np.uint8), (cw, ch), interpolation=cv2.INTER_NEAREST).astype(bool)
    return left, right, valid


def augment_pair(left: np.ndarray, right: np.ndarray, valid: np.ndarray, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Photometric jitter applied equally to both views, and a horizontal flip that keeps the geometry valid.

    Flip: the mirrored right view becomes the left view and vice versa, so disparities stay positive; the valid
    mask is mirrored with it (it is the intersection of both views' masks, so it belongs to both).

    Args:
        left, right: (H, W, 3) float32 RGB in [0, 1]; valid: (H, W) float32.

    Returns:
        the augmented ``(left, right, valid)``, images still in [0, 1].
    """
    gamma = rng.uniform(0.8, 1.2)
    brightness = rng.uniform(0.8, 1.2)
    colour = rng.uniform(0.9, 1.1, size=3).astype(np.float32)
    left = np.clip((left ** gamma) * brightness * colour, 0.0, 1.0)
    right = np.clip((right ** gamma) * brightness * colour, 0.0, 1.0)
    if rng.random() < 0.5:
        left, right = right[:, ::-1], left[:, ::-1]
        valid = valid[:, ::-1]
    return left.astype(np.float32), right.astype(np.float32), valid
