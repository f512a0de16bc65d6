"""The U-Net loss (paper 001) and L2 loss (paper 002) on hand examples, the pseudo ground truth from stereo, and a
short supervised training of each family on the Trainer (tiny synthetic data, no shared data needed)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from stereo_depth_ros.cli import main as cli_main
from stereo_depth_ros.data.mono_folder import MonoDepthFolderDataset, depth_target_path
from stereo_depth_ros.losses import image_edge_weights, l2_depth_loss, unet_depth_loss
from stereo_depth_ros.models.registry import create_estimator
from stereo_depth_ros.training.mono_supervised import (TrainMonoOptions, gate_disparity, median_scaled_abs_rel,
                                                       normalised_relative_depth, train_mono)


def _ramp(height=16, width=16):
    return torch.linspace(0.2, 0.8, width).repeat(1, 1, height, 1)


def test_unet_loss_is_zero_for_a_perfect_prediction():
    depth, image = _ramp(), torch.rand(1, 3, 16, 16)
    losses = unet_depth_loss(depth, depth.clone(), image)
    assert all(float(value) == pytest.approx(0.0, abs=1e-6) for value in losses.values())


def test_l1_term_measures_the_offset_and_ssim_term_sees_structure():
    target, image = _ramp(), torch.zeros(1, 3, 16, 16)
    offset = unet_depth_loss(target + 0.1, target, image)
    assert float(offset["l1"]) == pytest.approx(0.1, abs=1e-6)
    assert float(offset["edge"]) == 0.0  # a flat image has no edges
    flat = torch.full_like(target, float(target.mean()))  # right mean, no structure
    structure_lost = unet_depth_loss(flat, target, image)
    assert float(structure_lost["ssim"]) > float(offset["ssim"])


def test_edge_term_weights_errors_on_image_edges():
    target = _ramp()
    edge_image = torch.zeros(1, 3, 16, 16)
    edge_image[..., 8:] = 1.0  # a vertical edge between columns 7 and 8
    weight_x, weight_y = image_edge_weights(edge_image)
    assert float(weight_x[0, 0, 0, 7]) == pytest.approx(1 - np.exp(-1)) and float(weight_x[0, 0, 0, 3]) == 0.0
    assert float(weight_y.abs().max()) == 0.0
    error_on_edge, error_off_edge = target.clone(), target.clone()
    error_on_edge[..., 7] += 0.5
    error_off_edge[..., 3] += 0.5
    on = unet_depth_loss(error_on_edge, target, edge_image)
    off = unet_depth_loss(error_off_edge, target, edge_image)
    assert float(on["l1"]) == pytest.approx(float(off["l1"]))
    assert float(on["edge"]) > 0 and float(off["edge"]) == 0.0


def test_unet_loss_normalisation():
    prediction, target, image = torch.rand(2, 1, 12, 12), torch.rand(2, 1, 12, 12), torch.rand(2, 3, 12, 12)
    losses = unet_depth_loss(prediction, target, image)
    expected = (2 * losses["l1"] + 1 * losses["ssim"] + 5 * losses["edge"]) / 8
    assert float(losses["total"]) == pytest.approx(float(expected), rel=1e-6)
    scaled = unet_depth_loss(prediction, target, image, alpha=20, beta=10, gamma=50)
    assert float(scaled["total"]) == pytest.approx(float(losses["total"]), rel=1e-6)
    only_l1 = unet_depth_loss(prediction, target, image, alpha=1, beta=0, gamma=0)
    assert float(only_l1["total"]) == pytest.approx(float(losses["l1"]), rel=1e-6)
    with pytest.raises(ValueError, match="not all 0"):
        unet_depth_loss(prediction, target, image, alpha=0, beta=0, gamma=0)
    with pytest.raises(ValueError, match="prediction and target"):
        unet_depth_loss(prediction, target[:, :, :6], image)


def test_masked_pixels_do_not_count():
    target = _ramp()
    prediction = target.clone()
    prediction[..., :4] = 0.0  # wrong only where the target is unknown
    target_with_nan = target.clone()
    target_with_nan[..., :4] = float("nan")
    mask = torch.ones_like(target)
    mask[..., :4] = 0
    losses = unet_depth_loss(prediction, target_with_nan, torch.rand(1, 3, 16, 16), mask)
    assert float(losses["l1"]) == 0.0 and torch.isfinite(losses["total"])
    assert float(l2_depth_loss(prediction, target_with_nan, mask)) == 0.0


def test_l2_loss_hand_value():
    prediction, target = torch.full((1, 1, 4, 4), 0.5), torch.full((1, 1, 4, 4), 0.1)
    assert float(l2_depth_loss(prediction, target)) == pytest.approx(0.5 * 0.4 ** 2)


def test_pseudo_ground_truth_gating_and_depth_direction():
    network = np.full((4, 40), 20.0, np.float32)
    sgbm = network + np.float32(1.0)
    sgbm[0] = np.nan  # SGBM silent: network fills
    sgbm[1] = 40.0  # SGBM disagrees: unknown
    valid = np.ones(network.shape, bool)
    target = gate_disparity(network, sgbm, valid)
    assert np.isnan(target[:, :20]).all()  # left band x < 5th percentile of the disparity: no match
    assert np.allclose(target[0, 20:], 20.0) and np.isnan(target[1, 20:]).all() and np.allclose(target[2, 20:], 21.0)
    depth = normalised_relative_depth(np.array([[10.0, 20.0, 40.0]], np.float32))
    assert depth[0, 0] > depth[0, 1] > depth[0, 2]  # larger disparity = nearer
    with pytest.raises(ValueError, match="no positive"):
        normalised_relative_depth(np.full((2, 2), np.nan, np.float32))


def test_median_scaled_abs_rel_is_scale_free():
    target = torch.rand(1, 1, 8, 8) + 0.5
    mask = torch.ones_like(target)
    assert median_scaled_abs_rel(3.0 * target, target, mask) == pytest.approx(0.0, abs=1e-6)
    assert median_scaled_abs_rel(target.flip(-1), target, mask) > 0.05


def _write_synthetic_set(folder, count=6, size=(40, 48)):
    """Images whose depth is their brightness ramp (a map a network can learn in a few steps)."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        depth = np.tile(np.linspace(0.2, 1.0, size[0], dtype=np.float32)[:, None], (1, size[1]))
        if index % 2:
            depth = depth[::-1].copy()
        image = np.clip(depth[..., None] * 200 + rng.normal(0, 5, size + (3,)), 0, 255).astype(np.uint8)
        depth[:3, :3] = np.nan  # an unknown patch
        cv2.imwrite(str(folder / f"{index}.png"), image)
        np.save(depth_target_path(folder / f"{index}.png"), depth)


def test_dataset_items(tmp_path):
    _write_synthetic_set(tmp_path / "set")
    item = MonoDepthFolderDataset(tmp_path / "set", crop=(32, 32), augment=True)[0]
    assert item["image"].shape == (3, 32, 32) and item["depth"].shape == item["mask"].shape == (1, 32, 32)
    assert torch.isfinite(item["depth"]).all() and set(item["mask"].unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(FileNotFoundError, match="depth target"):
        (tmp_path / "empty").mkdir()
        cv2.imwrite(str(tmp_path / "empty" / "a.png"), np.zeros((4, 4, 3), np.uint8))
        MonoDepthFolderDataset(tmp_path / "empty")


@pytest.mark.parametrize("model, steps", [("unet", 40), ("c", 60), ("scrdu", 60)])
def test_short_training_lowers_the_loss(tmp_path, model, steps):
    _write_synthetic_set(tmp_path / "train")
    _write_synthetic_set(tmp_path / "validation", count=2)
    out = tmp_path / f"{model}.safetensors"
    torch.set_num_threads(1)
    card = train_mono(TrainMonoOptions(model=model, out=out, data=[str(tmp_path / "train")],
                                       validation=[str(tmp_path / "validation")], steps=steps, batch_size=4,
                                       crop=(32, 32), lr=3e-3, checkpoint_every=steps, progress=False))
    rows = [json.loads(json.dumps(row)) for row in
            __import__("csv").DictReader(out.with_name(out.stem + ".losses.csv").open())]
    first = np.mean([float(row["total"]) for row in rows[:5]])
    last = np.mean([float(row["total"]) for row in rows[-5:]])
    assert last < 0.7 * first, (first, last)
    assert card["steps"] == steps and card["sha256"] and card["validation"]["abs_rel"] >= 0
    estimator = create_estimator(model, weights=out, backend="torch")
    depth = estimator.estimate_depth(np.full((40, 48, 3), 120, np.uint8))
    assert depth.shape == (40, 48) and np.isfinite(depth).all()


def test_train_mono_command_refuses_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli_main(["train-mono", "--model", "unet-tiny", "--out", str(tmp_path / "w.safetensors")])
    code = cli_main(["train-mono", "--model", "unet", "--out", str(tmp_path / "w.safetensors"), "--data",
                     str(tmp_path / "missing"), "--steps", "1"])
    assert code != 0 and "does not exist" in capsys.readouterr().err
    with pytest.raises(ValueError, match="multiples of 16"):
        train_mono(TrainMonoOptions(model="unet", out=tmp_path / "w.safetensors", data=[str(tmp_path)],
                                    crop=(30, 32)))


def test_train_mono_passes_the_rig_to_dispnet_and_refuses_it_elsewhere(tmp_path, capsys, monkeypatch):
    """The DispNet fine-tune for another rig goes through train-mono (its calibration makes depth metric); the
    supervised models refuse the DispNet-only options instead of ignoring them."""
    from stereo_depth_ros.training import mono_self_supervised

    received = {}

    def fake_train(options):
        received["options"] = options
        return {}

    monkeypatch.setattr(mono_self_supervised, "train_dispnet", fake_train)
    code = cli_main(["train-mono", "--model", "dispnet-subpixel", "--out", str(tmp_path / "d.safetensors"),
                     "--init", "base.safetensors", "--focal-length-px", "1050", "--image-width-px", "1280",
                     "--baseline-m", "0.0043", "--input-size", "160", "224"])
    options = received["options"]
    assert code == 0 and options.init == "base.safetensors" and options.focal_length_px == 1050.0
    assert options.image_width_px == 1280 and options.baseline_m == 0.0043 and options.input_size == (160, 224)
    code = cli_main(["train-mono", "--model", "unet", "--out", str(tmp_path / "u.safetensors"), "--baseline-m", "0.1"])
    assert code != 0 and "--baseline-m apply to --model dispnet-subpixel only" in capsys.readouterr().err
    code = cli_main(["train-mono", "--model", "dispnet-subpixel", "--out", str(tmp_path / "d.safetensors"),
                     "--synthetic-ground-truth", "30"])
    assert code != 0 and "trains without ground truth" in capsys.readouterr().err


def test_synthetic_ground_truth_is_the_true_depth_normalised_and_refuses_the_test_sets(tmp_path, shared_data):
    """--synthetic-ground-truth: BDIS synthetic frames with their true depth in the pseudo ground truth's layout
    (image 320 px wide, target = depth / P98 in [0, 1], nearer = smaller), split every 5th frame; sets 32 and 33 are
    the monocular test sets and are refused."""
    from stereo_depth_ros.evaluation.datasets import bdis_synthetic
    from stereo_depth_ros.training.mono_supervised import build_synthetic_ground_truth

    root = shared_data / "endoscopic_stereo"
    if not (root / "bdis_synthetic" / "30").is_dir():
        pytest.skip(f"BDIS synthetic set 30 is not in {root} (the shared data set)")
    with pytest.raises(ValueError, match="32 and 33"):
        build_synthetic_ground_truth(root, tmp_path / "bad", (30, 32), progress=False)
    summary = build_synthetic_ground_truth(root, tmp_path / "synthetic", (30,), progress=False)
    frames = len(bdis_synthetic(shared_data, (30,)))
    assert summary["train_frames"] + summary["validation_frames"] == frames
    assert summary["validation_frames"] == len(range(2, frames, 5))
    first = next(iter(bdis_synthetic(shared_data, (30,))))
    image = cv2.imread(str(tmp_path / "synthetic" / "train" / "bdis_synthetic-30-1.png"))
    target = np.load(depth_target_path(tmp_path / "synthetic" / "train" / "bdis_synthetic-30-1.png"))
    assert image.shape[1] == 320 and target.shape == image.shape[:2]
    known = np.isfinite(target)
    assert known.mean() > 0.9 and target[known].min() >= 0 and target[known].max() <= 1
    # the target is depth (not disparity): it correlates positively with the true depth resized to its grid
    depth = cv2.resize(1.0 / first.gt_disparity, (target.shape[1], target.shape[0]), interpolation=cv2.INTER_AREA)
    both = known & np.isfinite(depth)
    assert np.corrcoef(target[both], depth[both])[0, 1] > 0.95
