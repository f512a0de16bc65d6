"""The base class of every training dataset read from image folders (stereo pairs now; single images with masks,
NIR/RGB pairs and high-resolution stereo next).

:class:`ImageFolderDataset` owns what every family shares, in the spirit of monodepth2's ``MonoDataset``
(Godard et al., "Digging Into Self-Supervised Monocular Depth Estimation", ICCV 2019): finding the samples under
one or more root folders, leaving out the samples of an exclusion list (``config/splits/*.txt``), reading and caching
the files, a repeatable random generator per item, and the order of the per-item pipeline

    read (cached) -> random crop -> to float -> augmentation -> tensors

whose steps are hooks a family overrides (:meth:`find_samples`, :meth:`read_sample`, :meth:`crop_sample`,
:meth:`augment_sample`, :meth:`to_item`). Files are read, listed and paired with :mod:`stereo_depth_ros.images`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from stereo_depth_ros.images import read_image_bgr

Sample = dict[str, np.ndarray]


def read_pair_list(path: str | Path) -> list[str]:
    """Read a sample list (``config/splits/*.txt``): one path or path suffix per line, ``#`` comments and blank lines
    ignored. For stereo pairs the entry is the left image's path.

    Raises:
        FileNotFoundError: if the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pair list {path} does not exist")
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def path_in_list(path: Path, entries: list[str]) -> bool:
    """True if ``path`` ends with one of ``entries`` (compared as POSIX paths, whole components only).

    Example:
        >>> path_in_list(Path("/data/bdis_invivo/6/images_rectified/left/201.png"), ["6/images_rectified/left/201.png"])
        True
        >>> path_in_list(Path("/data/bdis_invivo/16/left/201.png"), ["6/left/201.png"])
        False
    """
    posix = "/" + path.as_posix()
    return any(posix.endswith("/" + entry.strip("/")) for entry in entries)


def check_crop_size(crop) -> tuple[int, int] | None:
    """``crop`` as ``(height, width)`` positive pixels, or None for whole images.

    Raises:
        ValueError: unless it is None or two positive integers.
    """
    if crop is None:
        return None
    if len(crop) != 2 or any(int(size) != size or size <= 0 for size in crop):
        raise ValueError(f"crop must be (height, width) positive pixels, got {tuple(crop)}")
    return int(crop[0]), int(crop[1])


class ImageFolderDataset(Dataset):
    """Samples of image files found under root folders; the base class of the training datasets.

    A sample is a tuple of files (for example the left and right image of a stereo pair, or an image and its mask)
    named by :attr:`FIELDS`; its first file is its key (exclusion lists and the item's ``name`` use it).
    Item ``k`` is sample ``k % len(samples)``: ``samples_per_epoch`` may exceed the number of samples, which are then
    drawn cyclically. Crops and augmentations of item ``k`` use ``np.random.default_rng(seed + k)`` only, so an item
    is the same every time it is read (a run is repeatable and resumes exactly, whatever the batch order).

    Subclasses implement :meth:`find_samples` and may override the hooks :meth:`read_sample` (default: every file as
    8-bit BGR), :meth:`crop_sample` (default: the same random window of every array), :meth:`to_float` (default:
    3-channel uint8 BGR -> float32 RGB in [0, 1], bool masks -> float32 0/1), :meth:`augment_sample` (default:
    none) and :meth:`to_item` (default: (C, h, w) float32 tensors, 2D arrays as (1, h, w), plus ``name``).

    Args:
        roots: one folder or several; each must exist and hold a layout :meth:`find_samples` knows.
        crop: (height, width) random crop for training in pixels, or None for whole images.
        augment: apply :meth:`augment_sample` (random; the family decides what).
        samples_per_epoch: length of the dataset, default the number of samples.
        seed: seed of the per-item random generators (``seed + item``).
        exclude: paths or path suffixes of the key files of samples to leave out (held-out test samples; see
            :func:`read_pair_list`).

    Raises:
        FileNotFoundError: if a root folder does not exist or has no layout :meth:`find_samples` knows, or no sample
            is left (the message names the folders and how many samples the exclusion list removed).
        ValueError: for a bad ``crop`` or ``samples_per_epoch``, or a root's files do not pair up (from
            :func:`stereo_depth_ros.images.pair_stereo_folders`).
    """

    FIELDS: tuple[str, ...] = ("image",)

    def __init__(self, roots: list[str | Path] | str | Path, crop: tuple[int, int] | None = None,
                 augment: bool = False, samples_per_epoch: int | None = None, seed: int = 0,
                 exclude: list[str] | None = None) -> None:
        self.crop = check_crop_size(crop)
        if samples_per_epoch is not None and samples_per_epoch <= 0:
            raise ValueError(f"samples_per_epoch must be positive, got {samples_per_epoch}")
        if isinstance(roots, (str, Path)):
            roots = [roots]
        self.roots = [Path(root) for root in roots]
        samples: list[tuple[Path, ...]] = []
        for root in self.roots:
            if not root.is_dir():
                raise FileNotFoundError(f"data folder {root} does not exist")
            samples.extend(tuple(sample) for sample in self.find_samples(root))
        found = len(samples)
        if exclude:
            samples = [sample for sample in samples if not path_in_list(sample[0], exclude)]
        if not samples:
            removed = f" ({found} found, all in the exclusion list)" if found else ""
            raise FileNotFoundError(f"no {self.sample_description()} found in {[str(r) for r in self.roots]}"
                                    f"{removed}")
        self.samples = samples
        self.augment = augment
        self.samples_per_epoch = samples_per_epoch or len(samples)
        self.seed = seed
        self._cache: dict[int, Sample] = {}

    # Hooks a family implements or overrides.

    def find_samples(self, root: Path) -> list[tuple[Path, ...]]:
        """The samples under ``root``: one tuple of files per sample, in the order of :attr:`FIELDS`.

        Raises:
            FileNotFoundError: if ``root`` has no layout this dataset knows (name the layouts expected).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement find_samples(root)")

    def sample_description(self) -> str:
        """What a sample is, for error messages (``"stereo pairs"``, ``"images with masks"``)."""
        return "samples"

    def read_sample(self, index: int) -> Sample:
        """The arrays of sample ``index`` at full size, by field name (read once, then cached by :meth:`load_sample`).

        Default: every file of the sample as (H, W, 3) uint8 BGR (:func:`stereo_depth_ros.images.read_image_bgr`).

        Raises:
            FileNotFoundError, ValueError: for a missing or undecodable file (the message names it).
        """
        return {field: read_image_bgr(path) for field, path in zip(self.FIELDS, self.samples[index])}

    def crop_sample(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """A random ``self.crop`` window, the same for every array of the sample.

        Raises:
            ValueError: if the crop is larger than the images.
        """
        height, width = next(iter(sample.values())).shape[:2]
        crop_height, crop_width = self.crop
        if crop_height > height or crop_width > width:
            raise ValueError(f"crop {crop_height}x{crop_width} is larger than the image {height}x{width}")
        y, x = int(rng.integers(0, height - crop_height + 1)), int(rng.integers(0, width - crop_width + 1))
        return {field: array[y:y + crop_height, x:x + crop_width] for field, array in sample.items()}

    def to_float(self, sample: Sample) -> Sample:
        """(H, W, 3) uint8 BGR -> float32 RGB in [0, 1]; bool masks -> float32 0/1; other arrays unchanged."""
        converted = {}
        for field, array in sample.items():
            if array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3:
                array = array[..., ::-1].astype(np.float32) / 255.0  # BGR -> RGB
            elif array.dtype == bool:
                array = array.astype(np.float32)
            converted[field] = array
        return converted

    def augment_sample(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """Random augmentation of the float sample (default: none); called only when ``augment`` is set."""
        return sample

    def to_item(self, sample: Sample, index: int) -> dict:
        """Tensors of the sample: (H, W, C) arrays -> (C, H, W), (H, W) -> (1, H, W); ``name`` = the key file."""
        item = {}
        for field, array in sample.items():
            array = array.transpose(2, 0, 1) if array.ndim == 3 else array[None]
            item[field] = torch.from_numpy(np.ascontiguousarray(array))
        item["name"] = str(self.samples[index][0])
        return item

    # The shared pipeline.

    def __len__(self) -> int:
        return self.samples_per_epoch

    def load_sample(self, index: int) -> Sample:
        """:meth:`read_sample` of sample ``index``, cached in memory (each file is read once per process)."""
        if index not in self._cache:
            self._cache[index] = self.read_sample(index)
        return self._cache[index]

    def item_rng(self, item: int) -> np.random.Generator:
        """The random generator of item ``item``: ``np.random.default_rng(seed + item)``."""
        return np.random.default_rng(self.seed + item)

    def __getitem__(self, item: int) -> dict:
        if not 0 <= item < len(self):
            raise IndexError(f"item {item} is outside the dataset (0..{len(self) - 1})")
        index = item % len(self.samples)
        sample = self.load_sample(index)
        rng = self.item_rng(item) if self.augment or self.crop else None
        if self.crop is not None:
            sample = self.crop_sample(sample, rng)
        sample = self.to_float(sample)
        if self.augment:
            sample = self.augment_sample(sample, rng)
        return self.to_item(sample, index)
