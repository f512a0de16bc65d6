"""Image files and arrays shared by every layer: reading, listing, pairing folders, BGR <-> network tensors.

One place for each of these, so datasets, bags, evaluation and the estimators read, order, pair and convert images
the same way. Foundation module: imports nothing else from this package.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def natural_key(path: Path) -> list:
    """Sort key that orders ``2.png`` before ``10.png``.

    Example:
        >>> [p.name for p in sorted([Path("10.png"), Path("2.png")], key=natural_key)]
        ['2.png', '10.png']
    """
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def read_image(path: str | Path, flags: int = cv2.IMREAD_COLOR, what: str = "image") -> np.ndarray:
    """Read an image file with OpenCV (``flags`` as ``cv2.imread``); ``what`` names the file in errors.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if OpenCV cannot decode it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    image = cv2.imread(str(path), flags)
    if image is None:
        raise ValueError(f"{what} file {path} could not be decoded")
    return image


def read_image_bgr(path: str | Path) -> np.ndarray:
    """Read an 8-bit colour image as (H, W, 3) uint8 BGR (grey images are expanded to three channels).

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if OpenCV cannot decode it.
    """
    return read_image(path, cv2.IMREAD_COLOR)


def list_images(folder: str | Path, what: str = "image") -> list[Path]:
    """Image files (png, jpg, bmp, tif) of a folder in natural order (``2.png`` before ``10.png``).

    Raises:
        FileNotFoundError: if the folder does not exist.
        ValueError: if it holds no image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder {folder} does not exist")
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                   key=natural_key)
    if not files:
        raise ValueError(f"{what} folder {folder} holds no image ({', '.join(IMAGE_SUFFIXES)})")
    return files


def pair_stereo_folders(left_dir: str | Path, right_dir: str | Path) -> list[tuple[Path, Path]]:
    """Pair the left and right images of two folders by file name, in natural order.

    Returns:
        ``[(left_path, right_path), ...]`` for every left image.

    Raises:
        FileNotFoundError: if a folder does not exist.
        ValueError: if the left folder holds no image, or some file names are on one side only (the message lists
            up to five of each).
    """
    lefts = list_images(left_dir, "left image")
    rights = {p.name: p for p in list_images(right_dir, "right image")}
    left_names = {p.name for p in lefts}
    only_left = sorted(left_names - rights.keys(), key=lambda n: natural_key(Path(n)))
    only_right = sorted(rights.keys() - left_names, key=lambda n: natural_key(Path(n)))
    if only_left or only_right:
        raise ValueError(f"left folder {left_dir} and right folder {right_dir} do not hold the same file names: "
                         f"only left: {only_left[:5]}{' ...' if len(only_left) > 5 else ''}, "
                         f"only right: {only_right[:5]}{' ...' if len(only_right) > 5 else ''}")
    return [(p, rights[p.name]) for p in lefts]


def check_image(image_bgr: np.ndarray, what: str = "image") -> None:
    """Validate one colour image: an (H, W, 3) uint8 BGR array of non-zero size.

    Raises:
        ValueError: naming the problem (type, shape, dtype, empty).

    Example:
        >>> check_image(np.zeros((4, 4), np.uint8))
        Traceback (most recent call last):
        ...
        ValueError: image must be (H, W, 3) uint8 BGR, got shape (4, 4)
    """
    if not isinstance(image_bgr, np.ndarray):
        raise ValueError(f"{what} must be a numpy array, got {type(image_bgr).__name__}")
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"{what} must be (H, W, 3) uint8 BGR, got shape {image_bgr.shape}")
    if image_bgr.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8, got {image_bgr.dtype}")
    if image_bgr.shape[0] == 0 or image_bgr.shape[1] == 0:
        raise ValueError(f"{what} is empty (shape {image_bgr.shape})")


def check_stereo_pair(left_bgr: np.ndarray, right_bgr: np.ndarray) -> None:
    """Validate a rectified stereo pair: two (H, W, 3) uint8 BGR arrays of the same, non-empty size.

    Raises:
        ValueError: naming the side and the problem (type, shape, dtype, empty, size mismatch).

    Example:
        >>> check_stereo_pair(np.zeros((2, 3, 3), np.uint8), np.zeros((2, 4, 3), np.uint8))
        Traceback (most recent call last):
        ...
        ValueError: left and right images differ in size: (2, 3) vs (2, 4)
    """
    check_image(left_bgr, "left image")
    check_image(right_bgr, "right image")
    if left_bgr.shape != right_bgr.shape:
        raise ValueError(f"left and right images differ in size: {left_bgr.shape[:2]} vs {right_bgr.shape[:2]}")


def bgr_to_tensor(image_bgr: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 BGR (OpenCV order) -> (1, 3, H, W) float32 RGB in [0, 1], what the networks take.

    Raises:
        ValueError: if the image is not (H, W, 3) uint8.

    Example:
        >>> bgr_to_tensor(np.array([[[0, 0, 255]]], dtype=np.uint8))[0, :, 0, 0].tolist()
        [1.0, 0.0, 0.0]
    """
    check_image(image_bgr)
    rgb = np.ascontiguousarray(image_bgr[..., ::-1].transpose(2, 0, 1), dtype=np.float32) / 255.0
    return torch.from_numpy(rgb)[None]


def crop_to_multiple(image: np.ndarray, scale: int) -> np.ndarray:
    """The top-left part of (H, W, ...) ``image`` whose height and width are multiples of ``scale``.

    Raises:
        ValueError: if the image is smaller than ``scale`` pixels in either direction.
    """
    height, width = (image.shape[0] // scale) * scale, (image.shape[1] // scale) * scale
    if height == 0 or width == 0:
        raise ValueError(f"image of {image.shape[1]}x{image.shape[0]} pixels is smaller than the scale {scale}")
    return image[:height, :width]
