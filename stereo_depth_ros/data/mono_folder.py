"""Single images with a depth target, for supervised monocular depth training (light U-Net, refinement CNNs).

Layout of a folder (what :func:`stereo_depth_ros.training.mono_supervised.build_pseudo_ground_truth` writes):
``<name>.png`` (8-bit colour image) and ``<name>.depth.npy`` beside it: (H, W) float32 normalised depth in [0, 1],
NaN where the target is unknown. Any other single-image depth set can be written in this layout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stereo_depth_ros.data.folder_dataset import ImageFolderDataset, Sample
from stereo_depth_ros.images import list_images, read_image_bgr

DEPTH_SUFFIX = ".depth.npy"


def depth_target_path(image_path: str | Path) -> Path:
    """The depth target file of an image: ``<stem>.depth.npy`` in the same folder."""
    image_path = Path(image_path)
    return image_path.with_name(image_path.stem + DEPTH_SUFFIX)


class MonoDepthFolderDataset(ImageFolderDataset):
    """Images with normalised depth targets (``<name>.png`` + ``<name>.depth.npy``) for supervised training.

    Args:
        roots, crop, augment, samples_per_epoch, seed, exclude: as :class:`ImageFolderDataset`.

    Augmentation (``augment``): a horizontal flip of image and target (p = 0.5) and a brightness and contrast
    jitter of the image only (factors in [0.8, 1.2]), as paper 001 flips (its 15 degree rotation is left out: the
    targets are sparse near the borders already).

    Items: ``image`` (3, h, w) float32 RGB in [0, 1]; ``depth`` (1, h, w) float32 normalised depth in [0, 1] (0 where
    unknown); ``mask`` (1, h, w) float32, 1 where the target is known; ``name`` (the image's path).

    Raises:
        FileNotFoundError: if a root does not exist or holds no image with a depth target.
        ValueError: if a target's size differs from its image's, or a crop is larger than an image.
    """

    FIELDS = ("image", "depth")

    def find_samples(self, root: Path) -> list[tuple[Path, Path]]:
        samples = []
        for image_path in list_images(root, "training image"):
            target = depth_target_path(image_path)
            if target.is_file():
                samples.append((image_path, target))
        if not samples:
            raise FileNotFoundError(f"{root} holds no image with a depth target (<name>.png + <name>{DEPTH_SUFFIX})")
        return samples

    def sample_description(self) -> str:
        return "images with depth targets"

    def read_sample(self, index: int) -> Sample:
        """``image``: (H, W, 3) uint8 BGR; ``depth``: (H, W) float32, NaN where unknown.

        Raises:
            ValueError: if the target is not (H, W) float of the image's size.
        """
        image_path, depth_path = self.samples[index]
        image = read_image_bgr(image_path)
        depth = np.load(depth_path, allow_pickle=False)
        if depth.shape != image.shape[:2] or not np.issubdtype(depth.dtype, np.floating):
            raise ValueError(f"depth target {depth_path} is {depth.dtype} {depth.shape}; expected float "
                             f"{image.shape[:2]} like its image {image_path}")
        return {"image": image, "depth": depth.astype(np.float32)}

    def to_float(self, sample: Sample) -> Sample:
        converted = super().to_float(sample)
        depth = converted["depth"]
        known = np.isfinite(depth)
        converted["mask"] = known.astype(np.float32)
        converted["depth"] = np.where(known, depth, 0.0).astype(np.float32)
        return converted

    def augment_sample(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() < 0.5:
            sample = {field: np.ascontiguousarray(array[:, ::-1]) for field, array in sample.items()}
        gain, contrast = rng.uniform(0.8, 1.2, size=2)
        image = sample["image"]
        mean = image.mean()
        sample["image"] = np.clip((image - mean) * contrast + mean * gain, 0.0, 1.0).astype(np.float32)
        return sample
