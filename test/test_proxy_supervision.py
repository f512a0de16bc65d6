"""Proxy supervision and the validation signal without GT (issue 15 items 1-2): confident SGBM, proxy EPE, the
masked proxy loss, the proxy crops of the training dataset, train-stereo --proxy-weight, eval-stereo-proxy."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from stereo_depth_ros.cli import main as cli_main
from stereo_depth_ros.evaluation.proxy_validation import (ConfidentSGBMConfig, confident_sgbm, left_right_consistent,
                                                          proxy_epe, sgbm_left_right, spearman_correlation)
from stereo_depth_ros.losses import masked_proxy_loss
from stereo_depth_ros.training.proxy_supervision import ProxyStereoDataset
from stereo_depth_ros.training.stereo_trainer import TrainStereoOptions, train_stereo

BACKGROUND_PX, FOREGROUND_PX = 8, 24
SQUARE = (40, 120, 120, 200)  # rows y0:y1, columns x0:x1 of the foreground square in the left image


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random texture smoothed a little (SGBM needs structure a few pixels wide), uint8 BGR."""
    noise = rng.integers(0, 256, (height, width, 3)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(noise, (3, 3), 0.8) * 1.0, 0, 255).astype(np.uint8)


def occluding_square_pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A textured square at 24 px disparity over a textured background at 8 px.

    Returns:
        ``(left, right, gt, occluded)``: uint8 BGR (160, 320, 3) pair, (160, 320) float32 left GT disparity, and the
        bool mask of left pixels whose match is hidden behind the square in the right view.
    """
    rng = np.random.default_rng(seed)
    height, width = 160, 320
    background = _texture(rng, height, width + BACKGROUND_PX)
    left = background[:, :width].copy()
    right = background[:, BACKGROUND_PX:BACKGROUND_PX + width].copy()  # left(x) = right(x - 8)
    y0, y1, x0, x1 = SQUARE
    square = _texture(rng, y1 - y0, x1 - x0)
    left[y0:y1, x0:x1] = square
    right[y0:y1, x0 - FOREGROUND_PX:x1 - FOREGROUND_PX] = square
    gt = np.full((height, width), float(BACKGROUND_PX), np.float32)
    gt[y0:y1, x0:x1] = FOREGROUND_PX
    occluded = np.zeros((height, width), bool)
    occluded[y0:y1, x0 - (FOREGROUND_PX - BACKGROUND_PX):x0] = True  # their match x - 8 lies under the square
    return left, right, gt, occluded


# The masked proxy loss.

def test_proxy_loss_gives_no_gradient_to_non_confident_pixels():
    disparity = torch.tensor([[[[2.0, 5.0, 7.0, 1.0]]]], requires_grad=True)
    proxy = torch.tensor([[[[4.0, float("nan"), 7.5, 100.0]]]])
    mask = torch.tensor([[[[1.0, 0.0, 1.0, 0.0]]]])
    loss = masked_proxy_loss(disparity, proxy, mask)
    loss.backward()
    # smooth L1 (beta 1): |2 - 4| = 2 -> 1.5; |7 - 7.5| = 0.5 -> 0.125; mean over the two confident pixels
    assert loss.item() == pytest.approx((1.5 + 0.125) / 2)
    assert disparity.grad[0, 0, 0].tolist() == pytest.approx([-0.5, 0.0, -0.25, 0.0])


def test_proxy_loss_is_zero_not_nan_when_nothing_is_confident():
    disparity = torch.rand(2, 1, 4, 5, requires_grad=True)
    loss = masked_proxy_loss(disparity, torch.full((2, 1, 4, 5), float("nan")), torch.zeros(2, 1, 4, 5))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(disparity.grad == 0)


def test_proxy_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        masked_proxy_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5), torch.zeros(1, 1, 4, 4))


# Confident SGBM and the proxy EPE.

def test_confident_sgbm_rejects_the_occluded_pixels_and_keeps_correct_ones():
    left, right, gt, occluded = occluding_square_pair()
    config = ConfidentSGBMConfig(max_disparity=32)
    raw_left, _ = sgbm_left_right(left, right, config)
    confident = confident_sgbm(left, right, config)
    # SGBM's own uniqueness check already drops most of the occluded band; the left-right check drops most of what
    # is left there (about half of it more than 1 px wrong)
    raw_share, confident_share = np.isfinite(raw_left[occluded]).mean(), confident.left_mask[occluded].mean()
    assert confident_share < 0.05 and confident_share < 0.5 * raw_share, (raw_share, confident_share)
    visible = ~occluded
    visible[:, :config.max_disparity] = False  # SGBM's left band without a search range
    assert confident.left_mask[visible].mean() > 0.7
    errors = np.abs(confident.left - gt)[confident.left_mask]
    assert np.mean(errors < 1.0) > 0.95
    assert proxy_epe(gt, confident.left) < 0.5
    # A disparity that is wrong on the square by 3 px scores about 3 px times the square's share.
    wrong = gt.copy()
    wrong[gt == FOREGROUND_PX] += 3.0
    share = confident.left_mask[gt == FOREGROUND_PX].sum() / confident.left_mask.sum()
    assert proxy_epe(wrong, confident.left) == pytest.approx(3.0 * share, abs=0.5)


def test_confident_sgbm_of_the_right_view_sees_the_square_at_its_right_image_position():
    left, right, gt, _ = occluding_square_pair()
    confident = confident_sgbm(left, right, ConfidentSGBMConfig(max_disparity=32))
    y0, y1, x0, x1 = SQUARE
    inside = confident.right[y0 + 5:y1 - 5, x0 - FOREGROUND_PX + 5:x1 - FOREGROUND_PX - 5]
    assert np.nanmedian(inside) == pytest.approx(FOREGROUND_PX, abs=0.5)


def test_confident_sgbm_refuses_images_not_wider_than_its_search_range():
    """OpenCV would fail with a memory error on such a pair; the error names the width and the range instead."""
    left, right, _, _ = occluding_square_pair()
    with pytest.raises(ValueError, match="width 32 px, max_disparity 32 px"):
        confident_sgbm(left[:, :32], right[:, :32], ConfidentSGBMConfig(max_disparity=32))


def test_proxy_epe_hand_example_and_errors():
    disparity = np.array([[1.0, 2.0, np.nan, 4.0]])
    proxy = np.array([[2.0, 2.5, 1.0, np.nan]])
    assert proxy_epe(disparity, proxy) == pytest.approx((1.0 + 0.5) / 2)
    assert proxy_epe(disparity, proxy, np.array([[False, True, True, True]])) == pytest.approx(0.5)
    assert math.isnan(proxy_epe(disparity, proxy, np.zeros((1, 4), bool)))
    with pytest.raises(ValueError, match="one"):
        proxy_epe(np.zeros((2, 2)), np.zeros((2, 3)))


def test_left_right_check_rejects_an_inconsistent_pixel():
    left = np.full((1, 8), 2.0, np.float32)
    right = np.full((1, 8), 2.0, np.float32)
    right[0, 3] = 5.0  # the match of left column 5
    mask = left_right_consistent(left, right, 1.0)
    assert not mask[0, 5] and mask[0, 4] and not mask[0, 0]


def test_spearman_correlation_orders():
    assert spearman_correlation([1, 2, 3, 4], [2, 4, 6, 9]) == pytest.approx(1.0)
    assert spearman_correlation([1, 2, 3, 4], [9, 6, 4, 2]) == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        spearman_correlation([1, 2], [1, 2])


# The training dataset's proxies follow the crop (zoom, disparity shift) and the view-swapping flip.

@pytest.fixture()
def shifted_pair_folder(tmp_path) -> Path:
    """A left/ right/ folder with one textured pair of constant disparity 8 px (320x400)."""
    rng = np.random.default_rng(5)
    texture = _texture(rng, 320, 400 + BACKGROUND_PX)
    for side, image in (("left", texture[:, :400]), ("right", texture[:, BACKGROUND_PX:BACKGROUND_PX + 400])):
        (tmp_path / "pairs" / side).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "pairs" / side / "0.png"), image)
    return tmp_path / "pairs"


@pytest.mark.parametrize("augment", [False, True])
def test_dataset_proxy_scales_with_the_zoom_and_adds_the_shift(shifted_pair_folder, tmp_path, augment):
    dataset = ProxyStereoDataset([shifted_pair_folder], crop=(96, 128), augment=augment, scale_range=(2.0, 2.0),
                                 shift_range=(4, 4), samples_per_epoch=4, seed=1,
                                 sgbm=ConfidentSGBMConfig(max_disparity=32), cache=tmp_path / "cache")
    for index in range(4):
        item = dataset[index]
        assert item["proxy"].shape == (1, 96, 128) and item["proxy_mask"].shape == (1, 96, 128)
        assert item["proxy_mask"].mean() > 0.3
        values = item["proxy"][item["proxy_mask"] > 0]
        assert float(values.median()) == pytest.approx(2.0 * BACKGROUND_PX + 4, abs=0.5)  # d' = s d + t
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1  # computed once per pair


def test_train_stereo_with_proxy_weight_runs_and_writes_a_checkpoint(shifted_pair_folder, tmp_path):
    out = tmp_path / "proxy.safetensors"
    card = train_stereo(TrainStereoOptions(
        data=[str(shifted_pair_folder)], out=str(out), steps=3, batch_size=1, crop=(64, 96), scale_range=(1.0, 1.5),
        checkpoint_every=3, max_disparity=32, progress=False, device="cpu", proxy_weight=0.1,
        proxy_max_disparity=32, proxy_cache=str(tmp_path / "cache")))
    assert out.is_file() and out.with_name("proxy.ckpt.safetensors").is_file()
    assert card["proxy_supervision"]["weight"] == 0.1
    assert math.isfinite(card["final_losses"]["proxy3"]) and card["final_losses"]["proxy3"] >= 0
    with pytest.raises(ValueError, match="proxy_weight"):
        train_stereo(TrainStereoOptions(data=[str(shifted_pair_folder)], out=str(out), steps=1, proxy_weight=-1.0))


def test_eval_stereo_proxy_json_on_one_held_out_pair(shared_data, capsys):
    code = cli_main(["eval-stereo-proxy", "--limit", "1", "--backend", "torch", "--json",
                     "--data-root", str(shared_data)])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    held_out = report["held_out"]
    assert held_out["pairs"] == 1 and 0 < held_out["proxy_density_pct"] <= 100
    rows = held_out["candidates"]
    assert [row["stage"] for row in rows] == [0, 1, 2, 3]
    for row in rows:
        assert row["weights"] == "packaged" and row["input_scale"] == "auto"
        assert 0 < row["photometric"] < 1 and 0 <= row["proxy_epe_px"] < 5
    assert held_out["selected_by_proxy_epe"]["proxy_epe_px"] == min(row["proxy_epe_px"] for row in rows)
    assert report["sgbm"]["left_right_threshold_px"] == 1.0


def test_dataset_proxy_follows_the_view_swapping_flip(tmp_path):
    """With the square pair (two disparities), every confident proxy pixel of every item, flipped or not, must point
    at the matching right-image pixel: left(x) == right(x - d)."""
    left, right, _, _ = occluding_square_pair(seed=2)
    for side, image in (("left", left), ("right", right)):
        (tmp_path / "pairs" / side).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "pairs" / side / "0.png"), image)
    dataset = ProxyStereoDataset([tmp_path / "pairs"], crop=(160, 288), augment=True, samples_per_epoch=8, seed=0,
                                 sgbm=ConfidentSGBMConfig(max_disparity=32), cache=None)
    for index in range(len(dataset)):
        item = dataset[index]
        image_left, image_right = item["left"].numpy(), item["right"].numpy()
        mask = item["proxy_mask"][0].numpy() > 0
        rows, columns = np.nonzero(mask)
        values = item["proxy"][0].numpy()[mask]
        sources = np.rint(columns - values).astype(int)
        difference = np.abs(image_left[:, rows, columns] - image_right[:, rows, sources]).mean(0)
        on_square = np.abs(values - FOREGROUND_PX) < 1
        assert 0.1 < on_square.mean() < 0.6  # both disparities are present
        for name, part in (("background", ~on_square), ("square", on_square)):
            assert difference[part].mean() < 0.01, f"item {index}: the {name}'s proxy points at other pixels"


def test_the_stereo_node_publishes_the_stage_the_validation_signal_selects(shared_data, capsys):
    """Issue 15: defaults are chosen by the validation signal (EPE against confident SGBM on the 14 held-out real
    pairs), never by a test set. Its choice among the packaged weights' stages at the auto and unit input scales
    must be the stereo node's default output_stage and input_scale (0 = auto); a retraining that moves the best
    stage fails here until the default follows."""
    from stereo_depth_ros.ros.stereo_node import PARAMETER_SPECS

    code = cli_main(["eval-stereo-proxy", "--input-scales", "auto", "1", "--backend", "onnx", "--json",
                     "--data-root", str(shared_data)])
    assert code == 0
    held_out = json.loads(capsys.readouterr().out)["held_out"]
    assert held_out["pairs"] == 14
    selected = held_out["selected_by_proxy_epe"]
    assert selected["stage"] == PARAMETER_SPECS["output_stage"].default == 2
    assert selected["input_scale"] == "auto" and PARAMETER_SPECS["input_scale"].default == 0.0
    by_stage = {row["stage"]: row["proxy_epe_px"] for row in held_out["candidates"] if row["input_scale"] == "auto"}
    assert by_stage[0] > by_stage[1] > by_stage[2]  # every published-by-default stage improves on the one before
