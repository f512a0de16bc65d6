"""ImageFolderDataset, the base class of the training datasets: a family that is not stereo (an image with a mask)
derives from it with a layout and a reader only, and gets listing, exclusion, crops and items."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from stereo_depth_ros.data.folder_dataset import ImageFolderDataset, check_crop_size, path_in_list, read_pair_list
from stereo_depth_ros.images import pair_stereo_folders, read_image


class ImageMaskDataset(ImageFolderDataset):
    """``images/`` and ``masks/`` with matching names; the mask is a grey PNG, > 127 = instrument."""

    FIELDS = ("image", "mask")

    def find_samples(self, root: Path):
        if not (root / "images").is_dir():
            raise FileNotFoundError(f"{root} has no images/ folder")
        return pair_stereo_folders(root / "images", root / "masks")

    def sample_description(self) -> str:
        return "images with masks"

    def read_sample(self, index: int):
        image_path, mask_path = self.samples[index]
        return {"image": read_image(image_path), "mask": read_image(mask_path, cv2.IMREAD_GRAYSCALE) > 127}


def _write(root: Path, names=("1.png", "2.png", "10.png"), size=(20, 30)) -> None:
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True)
    for number, name in enumerate(names):
        # The image's blue channel holds the column index, the mask is True right of column 10 + number.
        image = np.zeros((*size, 3), np.uint8)
        image[..., 0] = np.arange(size[1], dtype=np.uint8)[None]
        image[..., 2] = 200
        mask = np.zeros(size, np.uint8)
        mask[:, 10 + number:] = 255
        cv2.imwrite(str(root / "images" / name), image)
        cv2.imwrite(str(root / "masks" / name), mask)


def test_a_derived_family_gets_listing_items_and_the_same_crop_window_for_every_array(tmp_path):
    _write(tmp_path)
    dataset = ImageMaskDataset(tmp_path, crop=(8, 12), seed=4, samples_per_epoch=7)
    assert [sample[0].name for sample in dataset.samples] == ["1.png", "2.png", "10.png"] and len(dataset) == 7
    item = dataset[4]  # sample 4 % 3 = 1
    assert item["image"].shape == (3, 8, 12) and item["mask"].shape == (1, 8, 12)
    assert item["name"].endswith("images/2.png")
    # BGR -> RGB in [0, 1]: red (BGR channel 2 = 200) first; the blue channel holds the columns of the window.
    assert float(item["image"][0].max()) == pytest.approx(200 / 255)
    columns = (item["image"][2, 0] * 255).round().long()
    assert columns.tolist() == list(range(int(columns[0]), int(columns[0]) + 12))
    # The mask was cut from the same window: True exactly from column 10 + 1 of the full image.
    expected = (columns >= 11).float()
    assert item["mask"][0, 0].tolist() == expected.tolist()
    assert all((dataset[4]["image"] == item["image"]).all() for _ in range(2)), "an item is the same every time"


def test_exclusion_lists_and_bad_folders_are_clear(tmp_path):
    _write(tmp_path / "set")
    held_out = tmp_path / "held_out.txt"
    held_out.write_text("# held out\nset/images/2.png\n\n")
    entries = read_pair_list(held_out)
    assert entries == ["set/images/2.png"]
    kept = ImageMaskDataset(tmp_path / "set", exclude=entries)
    assert [sample[0].name for sample in kept.samples] == ["1.png", "10.png"]
    assert not path_in_list(tmp_path / "set/images/12.png", entries)
    with pytest.raises(FileNotFoundError, match=r"no images with masks found .*\(3 found, all in the exclusion"):
        ImageMaskDataset(tmp_path / "set", exclude=["1.png", "2.png", "10.png"])
    with pytest.raises(FileNotFoundError, match="data folder .*missing does not exist"):
        ImageMaskDataset(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="has no images/ folder"):
        ImageMaskDataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="pair list .* does not exist"):
        read_pair_list(tmp_path / "none.txt")
    with pytest.raises(ValueError, match="crop 30x30 is larger than the image 20x30"):
        ImageMaskDataset(tmp_path / "set", crop=(30, 30))[0]
    with pytest.raises(IndexError, match="outside the dataset"):
        ImageMaskDataset(tmp_path / "set")[3]
    with pytest.raises(NotImplementedError, match="find_samples"):
        ImageFolderDataset(tmp_path / "set")


def test_crop_sizes_are_checked():
    assert check_crop_size(None) is None and check_crop_size([4, 6]) == (4, 6)
    for bad in ((0, 4), (4,), (4.5, 2), (-1, 3)):
        with pytest.raises(ValueError, match="crop must be"):
            check_crop_size(bad)
