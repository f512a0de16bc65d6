"""NIR/RGB photo pairs (``../shared/data/nir_rgb``, from the EPFL RGB-NIR scene set, Brown & Suesstrunk, CVPR 2011,
as re-published by the VIS-NIR registration dataset; see its SOURCE.txt): unpaired training crops for CycleGAN and
the aligned held-out pairs for evaluation.

Layouts:

- training (``country/``): ``NNNN_nir.jpg`` (8-bit grey) + ``NNNN_rgb.jpg``, pixel-aligned. CycleGAN (Zhu et al.,
  ICCV 2017) learns from unpaired sets, so :class:`UnpairedNirRgbDataset` draws the NIR and the RGB of an item from
  *independent* images and *independent* random windows: the alignment is never used in training.
- held-out (``indoor/`` and the other test scenes): ``NNNN_nir.jpg`` (NIR stored in 3 channels), ``NNNN_rgb.jpg``
  and ``NNNN_nir.npy`` (a 2x3 float affine matrix M). ``cv2.warpAffine(rgb, M, (w, h))`` aligns the RGB to the NIR
  (w, h: the NIR's size); the valid area is the warp of an all-ones image (:func:`read_aligned_pairs`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stereo_depth_ros.data.folder_dataset import ImageFolderDataset, Sample
from stereo_depth_ros.images import read_image

__all__ = ["UnpairedNirRgbDataset", "AlignedNirRgbPair", "read_aligned_pairs", "find_nir_rgb_pairs",
           "resize_short_side", "downscale_aligned_pair", "shifted_real_pairs"]

PAIR_PATTERN = re.compile(r"^(\d+)_nir\.(jpg|png)$")


def find_nir_rgb_pairs(root: str | Path) -> list[tuple[Path, Path]]:
    """``(NNNN_nir, NNNN_rgb)`` file pairs in ``root``, sorted by number.

    Raises:
        FileNotFoundError: if ``root`` is not a folder or holds no ``NNNN_nir.jpg`` with its ``NNNN_rgb.jpg``.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"NIR/RGB folder {root} does not exist")
    pairs = []
    for path in sorted(root.iterdir()):
        match = PAIR_PATTERN.match(path.name)
        if match:
            rgb = path.with_name(f"{match.group(1)}_rgb.{match.group(2)}")
            if rgb.is_file():
                pairs.append((path, rgb))
    if not pairs:
        raise FileNotFoundError(f"no NNNN_nir.jpg + NNNN_rgb.jpg pairs in {root}")
    return pairs


def resize_short_side(image: np.ndarray, short_side: int | None) -> np.ndarray:
    """``image`` resized (area interpolation) so that its shorter side is ``short_side`` pixels; None or a larger
    value than the image's: unchanged.

    Example:
        >>> resize_short_side(np.zeros((100, 300, 3), np.uint8), 50).shape
        (50, 150, 3)
    """
    height, width = image.shape[:2]
    if short_side is None or min(height, width) <= short_side:
        return image
    scale = short_side / min(height, width)
    size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def grey_as_bgr(image: np.ndarray) -> np.ndarray:
    """A grey image ((H, W) or (H, W, 3) uint8) as (H, W, 3) uint8 with three equal channels."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return np.repeat(image[..., None], 3, axis=2)


class UnpairedNirRgbDataset(ImageFolderDataset):
    """Unpaired NIR and RGB training crops for CycleGAN from folders of ``NNNN_nir.jpg`` + ``NNNN_rgb.jpg``.

    Item ``k``: the NIR of pair ``k % N`` and the RGB of a pair drawn at random (independently), each downscaled so
    its short side is ``short_side`` pixels, each with its own random ``crop`` window and, with ``augment``, its own
    random horizontal flip. Everything is drawn from ``np.random.default_rng(seed + k)`` (repeatable, resumable).

    Items: ``{"nir": (3, h, w) float32 grey replicated to 3 channels in [0, 1], "rgb": (3, h, w) float32 RGB in
    [0, 1], "name": the NIR file}``.

    Args:
        roots, samples_per_epoch, seed, exclude: as :class:`~stereo_depth_ros.data.folder_dataset.ImageFolderDataset`.
        crop: (height, width) pixels of the random windows (None: whole images, which must then share one size).
        augment: random horizontal flips.
        short_side: the short side in pixels after downscaling (None: full size; the country images are about
            1024x680, so 256 keeps about a quarter of each side).

    Raises:
        FileNotFoundError: for a folder without NIR/RGB pairs; ValueError for a bad crop or one larger than the
            downscaled images.
    """

    FIELDS = ("nir", "rgb")

    def __init__(self, roots, crop: tuple[int, int] | None = (128, 128), augment: bool = True,
                 samples_per_epoch: int | None = None, seed: int = 0, exclude: list[str] | None = None,
                 short_side: int | None = 256) -> None:
        if short_side is not None and (int(short_side) != short_side or short_side <= 0):
            raise ValueError(f"short_side must be a positive number of pixels or None, got {short_side!r}")
        self.short_side = short_side
        super().__init__(roots, crop=crop, augment=augment, samples_per_epoch=samples_per_epoch, seed=seed,
                         exclude=exclude)

    def find_samples(self, root: Path) -> list[tuple[Path, ...]]:
        """The ``(NNNN_nir, NNNN_rgb)`` pairs of ``root`` (:func:`find_nir_rgb_pairs`)."""
        return find_nir_rgb_pairs(root)

    def sample_description(self) -> str:
        """``"NIR/RGB pairs"``."""
        return "NIR/RGB pairs"

    def read_sample(self, index: int) -> Sample:
        """The pair downscaled to ``short_side``: NIR as 3-channel grey uint8, RGB as BGR uint8."""
        nir_path, rgb_path = self.samples[index]
        nir = grey_as_bgr(read_image(nir_path, cv2.IMREAD_GRAYSCALE, "NIR image"))
        rgb = read_image(rgb_path, cv2.IMREAD_COLOR, "RGB image")
        return {"nir": resize_short_side(nir, self.short_side), "rgb": resize_short_side(rgb, self.short_side)}

    def augment_sample(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """A random horizontal flip of each field, drawn independently (the fields are unpaired)."""
        return {field: (np.ascontiguousarray(array[:, ::-1]) if rng.random() < 0.5 else array)
                for field, array in sample.items()}

    def __getitem__(self, item: int) -> dict:
        if not 0 <= item < len(self):
            raise IndexError(f"item {item} is outside the dataset (0..{len(self) - 1})")
        rng = self.item_rng(item)
        nir_index = item % len(self.samples)
        rgb_index = int(rng.integers(len(self.samples)))
        sample = {"nir": self.load_sample(nir_index)["nir"], "rgb": self.load_sample(rgb_index)["rgb"]}
        if self.crop is not None:
            sample = {field: self.crop_sample({field: array}, rng)[field] for field, array in sample.items()}
        elif sample["nir"].shape != sample["rgb"].shape:
            raise ValueError(f"without a crop the NIR and RGB images must share one size; got {sample['nir'].shape} "
                             f"and {sample['rgb'].shape} (give a crop)")
        sample = self.to_float(sample)
        if self.augment:
            sample = self.augment_sample(sample, rng)
        return self.to_item(sample, nir_index)


@dataclass
class AlignedNirRgbPair:
    """One held-out pair, aligned to the NIR view.

    Attributes:
        name: the pair's number (``"0005"``).
        nir: (H, W) uint8 NIR.
        rgb: (H, W, 3) uint8 BGR, the RGB warped onto the NIR by M (zero outside the valid area).
        valid: (H, W) bool, where the warped RGB has data (the warp of an all-ones image equals 1).
        matrix: (2, 3) float64 affine M.
    """

    name: str
    nir: np.ndarray
    rgb: np.ndarray
    valid: np.ndarray
    matrix: np.ndarray


def read_aligned_pairs(folder: str | Path, limit: int | None = None, pixel_aligned: bool = False
                       ) -> list[AlignedNirRgbPair]:
    """Read and align the held-out pairs of ``folder`` (``NNNN_nir.jpg``, ``NNNN_rgb.jpg``, ``NNNN_nir.npy``).

    The RGB is warped with ``cv2.warpAffine(rgb, M, (w, h))`` (bilinear; w, h the NIR's size); ``valid`` is where the
    bilinear warp of an all-ones image is 1 (to 1e-3), so the band where the RGB was blended with the zero border is
    left out.

    Args:
        folder: the scene folder (e.g. ``../shared/data/nir_rgb/indoor``).
        limit: read only the first ``limit`` pairs (None: all).
        pixel_aligned: the pairs are pixel-aligned already (``nir_rgb/country``): M is the identity, no ``.npy``
            is read, and the images must share one size.

    Raises:
        FileNotFoundError: for a missing folder, no pairs, or a pair without its ``.npy`` matrix.
        ValueError: for a matrix that is not 2x3 finite numbers, or an undecodable image (naming the file).
    """
    pairs = find_nir_rgb_pairs(folder)
    if limit is not None:
        if int(limit) != limit or limit <= 0:
            raise ValueError(f"limit must be a positive number of pairs, got {limit!r}")
        pairs = pairs[:limit]
    result = []
    for nir_path, rgb_path in pairs:
        nir = read_image(nir_path, cv2.IMREAD_GRAYSCALE, "NIR image")
        rgb = read_image(rgb_path, cv2.IMREAD_COLOR, "RGB image")
        height, width = nir.shape
        if pixel_aligned:
            if rgb.shape[:2] != nir.shape:
                raise ValueError(f"pixel-aligned pair {nir_path.name}: the RGB is {rgb.shape[1]} x {rgb.shape[0]}, "
                                 f"the NIR {width} x {height}")
            matrix = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        else:
            matrix_path = nir_path.with_suffix(".npy")
            if not matrix_path.is_file():
                raise FileNotFoundError(f"affine matrix {matrix_path} of {nir_path.name} is missing")
            matrix = np.load(matrix_path, allow_pickle=False)
            if matrix.shape != (2, 3) or not np.all(np.isfinite(matrix)):
                raise ValueError(f"{matrix_path} must hold a finite 2x3 affine matrix, got shape {matrix.shape}")
            matrix = matrix.astype(np.float64)
        warped = cv2.warpAffine(rgb, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        ones = cv2.warpAffine(np.ones(rgb.shape[:2], np.float32), matrix, (width, height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        valid = ones >= 1.0 - 1e-3
        warped[~valid] = 0
        result.append(AlignedNirRgbPair(nir_path.name.split("_")[0], nir, warped, valid, matrix))
    return result


def downscale_aligned_pair(pair: AlignedNirRgbPair, short_side: int | None
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An aligned pair at ``short_side`` as ``eval-cross-modal`` evaluates it.

    Returns:
        ``(nir (h, w) uint8, rgb (h, w, 3) uint8 BGR, valid (h, w) bool)``: NIR and RGB by
        :func:`~stereo_depth_ros.data.nir_rgb.resize_short_side` (area), the mask by nearest-neighbour resizing to
        the NIR's size, the RGB set to 0 outside it. None or a short side at least the image's: unchanged size.
    """
    nir = resize_short_side(pair.nir, short_side)
    height, width = nir.shape
    rgb = resize_short_side(pair.rgb, short_side)
    valid = cv2.resize(pair.valid.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
    return nir, np.where(valid[..., None], rgb, 0).astype(np.uint8), valid


def shifted_real_pairs(folder: str | Path, shift_px: int, short_side: int | None = 256,
                       limit: int | None = None, pixel_aligned: bool = False) -> list[dict]:
    """Real NIR/RGB stereo pairs with exact ground truth, made from aligned NIR/RGB photographs by a known shift.

    Each aligned pair (:func:`read_aligned_pairs`, at ``short_side`` as ``eval-cross-modal``,
    :func:`downscale_aligned_pair`) of width W gives the left view ``NIR[:, :W - s]`` (and its RGB,
    ``RGB[:, :W - s]``, for the upper bound) and the right view ``RGB[:, s:]``: the scene point at left column x
    is at right column x - s, so the GT disparity is ``s`` (pixels) wherever the warped RGB is valid and x >= s,
    NaN elsewhere.
    ``pixel_aligned``: the photographs need no warp (``nir_rgb/country``; ``read_aligned_pairs``). The appearance
    difference between the views is that of a real NIR and a real RGB camera; the geometry (one fronto-parallel
    plane) is not a real scene's, and the affine alignment of the photographs is good to about a pixel.

    Returns:
        ``[{"name", "nir" (h, w - s) uint8, "left_rgb" (h, w - s, 3) uint8 BGR, "right_rgb" (h, w - s, 3) uint8 BGR,
        "gt_disparity" (h, w - s) float32}, ...]``.

    Raises:
        FileNotFoundError: for a missing folder or pair; ValueError: for a shift that is not a positive integer
            smaller than half the downscaled width.
    """
    if isinstance(shift_px, bool) or int(shift_px) != shift_px or shift_px <= 0:
        raise ValueError(f"shift must be a positive integer, got {shift_px!r}")
    result = []
    for pair in read_aligned_pairs(folder, limit, pixel_aligned):
        nir, rgb, valid = downscale_aligned_pair(pair, short_side)
        width = nir.shape[1]
        if 2 * shift_px >= width:
            raise ValueError(f"shift {shift_px} px must be less than half the width of pair {pair.name} "
                             f"({width} px at short side {short_side})")
        gt = np.full((nir.shape[0], width - shift_px), float(shift_px), np.float32)
        gt[:, :shift_px] = np.nan
        gt[~(valid[:, :width - shift_px] & valid[:, shift_px:])] = np.nan
        result.append({"name": f"{Path(folder).name}/{pair.name}", "nir": nir[:, :width - shift_px],
                       "left_rgb": rgb[:, :width - shift_px], "right_rgb": rgb[:, shift_px:], "gt_disparity": gt})
    return result
