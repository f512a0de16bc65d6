"""StereoFolderDataset: layouts, black borders, augmentation that keeps the stereo geometry."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from stereo_depth_ros.data.stereo_folder import (ScaredKeyframeDataset, StereoFolderDataset, augment_pair,
                                                 black_border_mask, random_crop)


def _write_pair_folder(root: Path, names=("1.png", "2.png", "10.png"), size=(40, 60)) -> None:
    rng = np.random.default_rng(0)
    for side in ("left", "right"):
        (root / side).mkdir(parents=True)
        for name in names:
            image = rng.integers(30, 255, (*size, 3), dtype=np.uint8)
            image[:5] = 0  # a black border at the top
            cv2.imwrite(str(root / side / name), image)


def test_left_right_folders_pair_by_name_in_natural_order(tmp_path):
    _write_pair_folder(tmp_path)
    dataset = StereoFolderDataset(tmp_path)
    assert [p[0].name for p in dataset.pairs] == ["1.png", "2.png", "10.png"]
    item = dataset[0]
    assert item["left"].shape == (3, 40, 60) and item["left"].dtype.is_floating_point
    assert 0.0 <= item["left"].min() and item["left"].max() <= 1.0
    assert item["valid"][0, :5].sum() == 0 and item["valid"][0, 10:].min() == 1


def test_missing_partner_and_missing_layout_are_clear_errors(tmp_path):
    _write_pair_folder(tmp_path)
    (tmp_path / "right" / "2.png").unlink()
    with pytest.raises(ValueError, match=r"only left: \[.2.png.\]"):
        StereoFolderDataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="images_rectified"):
        StereoFolderDataset(tmp_path / "left")


def test_crop_larger_than_image_is_rejected(tmp_path):
    _write_pair_folder(tmp_path)
    with pytest.raises(ValueError, match="crop"):
        StereoFolderDataset(tmp_path, crop=(64, 64))[0]


def _shifted_pair(disparity: int, size=(30, 120)):
    """A random-texture pair whose true disparity is ``disparity`` px everywhere: left(x) = right(x - d)."""
    rng = np.random.default_rng(1)
    wide = rng.integers(0, 255, (size[0], size[1] + disparity, 3), dtype=np.uint8)
    return wide[:, :size[1]].copy(), wide[:, disparity:].copy()


def _crop_disparity(left: np.ndarray, right: np.ndarray, search: int = 40) -> int:
    """The integer shift d with left(x) == right(x - d) in a crop (exact match over the overlap)."""
    matches = [d for d in range(search) if np.array_equal(left[:, d:], right[:, :right.shape[1] - d])]
    assert len(matches) == 1, matches
    return matches[0]


@pytest.mark.parametrize("shift", [-7, 0, 5])
def test_disparity_shift_adds_the_shift_to_every_disparity_of_the_crop(shift):
    left, right = _shifted_pair(12)
    valid = np.ones(left.shape[:2], bool)
    assert _crop_disparity(left, right) == 12
    for seed in range(5):
        crop_left, crop_right, crop_valid = random_crop(left, right, valid, (20, 64), np.random.default_rng(seed),
                                                        shift_range=(shift, shift))
        assert crop_left.shape == crop_right.shape == (20, 64, 3) and crop_valid.shape == (20, 64)
        assert _crop_disparity(crop_left, crop_right) == 12 + shift


def test_disparity_shift_masks_pixels_invalid_in_either_window():
    left, right = _shifted_pair(0, size=(10, 100))
    valid = np.ones(left.shape[:2], bool)
    valid[:, 40:50] = False  # an invalid band of the (combined) mask
    for seed in range(10):
        rng = np.random.default_rng(seed)
        crop_left, crop_right, crop_valid = random_crop(left, right, valid, (10, 50), rng, shift_range=(-20, -20))
        x = int(np.flatnonzero(np.all(left == crop_left[:, :1], axis=(0, 2)))[0])  # where the left window starts
        expected = valid[:, x:x + 50] & valid[:, x - 20:x + 30]
        np.testing.assert_array_equal(crop_valid, expected)
    with pytest.raises(ValueError, match="shift_range"):
        random_crop(left, right, valid, (10, 50), np.random.default_rng(0), shift_range=(3, -3))


def test_flip_swaps_and_mirrors_the_views():
    rng = np.random.default_rng(3)
    left = rng.random((4, 6, 3)).astype(np.float32)
    right = rng.random((4, 6, 3)).astype(np.float32)
    valid = np.ones((4, 6), np.float32)
    for seed in range(20):
        new_left, new_right, _ = augment_pair(left, right, valid, np.random.default_rng(seed))
        # Colour jitter is the same for both views, so the ratio to the source is shared; find which source.
        if np.allclose(new_left[:, ::-1].argsort(None), left.argsort(None)):
            continue
        flipped = np.corrcoef(new_left[:, ::-1].ravel(), right.ravel())[0, 1] > 0.9
        if flipped:
            assert np.corrcoef(new_right[:, ::-1].ravel(), left.ravel())[0, 1] > 0.9
            return
    pytest.fail("no flipped sample in 20 draws")


def test_colour_jitter_is_equal_for_both_views():
    image = np.random.default_rng(1).random((5, 5, 3)).astype(np.float32)
    new_left, new_right, _ = augment_pair(image, image.copy(), np.ones((5, 5), np.float32),
                                          np.random.default_rng(7))
    np.testing.assert_allclose(new_left, new_right[:, ::-1] if not np.allclose(new_left, new_right) else new_right,
                               atol=1e-6)


def test_black_border_of_real_bdis_set_20_is_masked(shared_data):
    image = cv2.imread(str(shared_data / "endoscopic_stereo/bdis_invivo/20/images_rectified/left/801.png"))
    mask = black_border_mask(image)
    assert mask[0, 0] == 0 and mask[-1, -1] == 0
    # The active area is roughly 340 x 245 of 720 x 288.
    assert 0.25 < mask.mean() < 0.6


def test_real_layouts_load(shared_data):
    root = shared_data / "endoscopic_stereo"
    dataset = ScaredKeyframeDataset([root / "bdis_invivo" / "6", root / "scared_keyframe_rectified"],
                                    crop=(128, 160), augment=True, seed=1)
    assert len(dataset.pairs) == 26
    a, b = dataset[3], dataset[3]
    assert a["left"].shape == (3, 128, 160)
    assert (a["left"] == b["left"]).all(), "an item is the same every time for the same seed"


def test_held_out_pairs_are_excluded_from_training_data(shared_data):
    from stereo_depth_ros.data.stereo_folder import read_pair_list

    root = shared_data / "endoscopic_stereo"
    held_out = read_pair_list(Path(__file__).resolve().parents[1] / "config/splits/bdis_invivo_test.txt")
    assert len(held_out) == 14
    sets = [root / "bdis_invivo" / s for s in ("6", "20", "21")]
    everything = StereoFolderDataset(sets)
    training = StereoFolderDataset(sets, exclude=held_out)
    assert len(everything.pairs) == 75 and len(training.pairs) == 61
    trained_names = {str(p[0]) for p in training.pairs}
    assert not any(str(p).endswith(entry) for p in trained_names for entry in held_out)
