"""Stereo super-resolution (issue 12): network shapes, the parallax attention on a known shift, PSNR/SSIM on hand
examples, a short training run, ``eval-sr --json`` and the node through rclpy."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os

import cv2
import numpy as np
import pytest
import torch

from stereo_depth_ros.evaluation.sr_metrics import pair_metrics, psnr, ssim
from stereo_depth_ros.models.registry import create_estimator, model_spec
from stereo_depth_ros.models.stereo_sr import (bicubic_downscale, bicubic_upscale, build_network,
                                               parallax_attention, valid_mask, warp_with_attention)
from stereo_depth_ros.models.weights import save_weights


def textured_pair(height: int, width: int, shift: int, seed: int = 0, blocks: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """A random texture (BGR uint8; smooth, or with ``blocks`` piecewise constant 4x4-pixel blocks with sharp
    edges) as the left view and the right view with disparity ``shift`` (right pixel x shows left pixel x +
    shift)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 4 + 2, (width + shift) // 4 + 2, 3)).astype(np.uint8)
    interpolation = cv2.INTER_NEAREST if blocks else cv2.INTER_CUBIC
    scene = cv2.resize(small, (small.shape[1] * 4, small.shape[0] * 4), interpolation=interpolation)
    return np.ascontiguousarray(scene[:height, :width]), np.ascontiguousarray(scene[:height, shift:shift + width])


# Network ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("stereo", [True, False])
def test_both_views_come_out_scaled_for_odd_sizes(scale, stereo):
    network = build_network({"scale": scale, "stereo": stereo, "channels": 8, "growth": 4}).eval()
    left, right = torch.rand(2, 3, 13, 21), torch.rand(2, 3, 13, 21)
    with torch.no_grad():
        sr_left, sr_right = network(left, right)
    assert sr_left.shape == sr_right.shape == (2, 3, 13 * scale, 21 * scale)
    # Untrained, the last convolution is zero: the output is the bicubic upscale of each view (views not swapped).
    expected = torch.nn.functional.interpolate(left, scale_factor=scale, mode="bicubic", align_corners=False)
    torch.testing.assert_close(sr_left, expected)
    assert not torch.allclose(sr_left, sr_right)


def test_stereo_network_is_bigger_only_by_the_cross_view_module():
    stereo = build_network({"scale": 2, "stereo": True})
    single = build_network({"scale": 2, "stereo": False})
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(stereo) - count(single) == count(stereo.bipam) > 0
    assert single.bipam is None


def test_parallax_attention_peaks_at_the_shift_and_masks_the_occluded_band():
    torch.manual_seed(0)
    shift, width, rows = 5, 24, 8
    scene = torch.randn(1, 64, rows, width + shift)
    # Disparity ``shift``: left pixel i shows scene column i, right pixel j shows scene column j + shift, so left
    # pixel i matches right pixel i - shift; the band i < shift of the left view has no match (occluded).
    left, right = scene[..., :width], scene[..., shift:]
    right_to_left, left_to_right = parallax_attention(left, right)
    peaks = right_to_left.argmax(-1)[0]  # (H, W): the right pixel each left pixel attends to most
    columns = torch.arange(width)
    matched = columns >= shift
    assert torch.equal(peaks[:, matched], (columns - shift)[matched].expand(rows, -1))
    assert right_to_left[0][:, matched].amax(-1).min() > 0.9  # the mass is at the shift
    valid_left = valid_mask(right_to_left, left_to_right)[0, 0]
    assert valid_left[:, matched].min() > 0.9  # the cycle left -> right -> left returns
    # Occluded pixels: their attention lands on a right pixel whose own attention goes back elsewhere (a few
    # unmatched pixels of both views may pick each other by chance).
    assert valid_left[:, ~matched].mean() < 0.5
    # Warping the right view's features with the attention reproduces the left view where matched.
    warped = warp_with_attention(right_to_left, right)
    torch.testing.assert_close(warped[..., matched], left[..., matched], atol=1e-3, rtol=1e-3)


# Metrics ------------------------------------------------------------------------------------------------------

def test_attention_loss_masks_see_every_pixel_of_a_spread_attention_and_drop_the_occluded_band():
    """PASSRnet's visibility masks (the default loss masks): a spread (untrained) attention leaves every pixel in
    the attention terms, where the network's valid masks would leave almost none (no gradient to learn matching);
    an attention that has found a shift of d marks the left band x < d, which the right view cannot see, invisible."""
    from stereo_depth_ros.training.sr_trainer import attention_losses, visibility_masks

    width, shift = 16, 3
    spread = torch.full((1, 2, width, width), 1.0 / width, requires_grad=True)
    visible_left, visible_right = visibility_masks(spread, spread)
    assert visible_left.shape == (1, 1, 2, width) and bool((visible_left == 1).all() and (visible_right == 1).all())
    left = torch.rand(1, 3, 2, width, generator=torch.Generator().manual_seed(0))
    right = torch.roll(left, -shift, dims=3)
    attention = {"right_to_left": spread, "left_to_right": spread,
                 "valid_left": torch.tanh(5 * (spread * spread.transpose(2, 3)).sum(-1)).unsqueeze(1),
                 "valid_right": torch.tanh(5 * (spread * spread.transpose(2, 3)).sum(-1)).unsqueeze(1)}
    visibility = attention_losses(attention, left, right, "visibility")["photometric"]
    valid = attention_losses(attention, left, right, "valid")["photometric"]
    assert float(visibility.detach()) > 2 * float(valid.detach()) > 0
    with pytest.raises(ValueError, match="visibility"):
        attention_losses(attention, left, right, "everywhere")

    right_to_left = torch.zeros(1, 1, width, width)
    for i in range(width):  # left pixel i sees right pixel i - d (clamped at the border)
        right_to_left[0, 0, i, max(i - shift, 0)] = 1.0
    left_to_right = torch.zeros(1, 1, width, width)
    for j in range(width):  # right pixel j sees left pixel j + d
        left_to_right[0, 0, j, min(j + shift, width - 1)] = 1.0
    visible_left, visible_right = visibility_masks(right_to_left, left_to_right)
    assert visible_left[0, 0, 0].tolist() == [0.0] * shift + [1.0] * (width - shift)
    assert visible_right[0, 0, 0].tolist() == [1.0] * (width - shift) + [0.0] * shift


def test_attention_proxy_finds_the_shift_and_its_loss_prefers_the_right_match():
    """The attention's proxy labels: confident SGBM on an LR patch pair finds its shift; the cross-entropy is lower
    for an attention peaked at that match than for one peaked 3 pixels off; unknown proxies are ignored."""
    from stereo_depth_ros.training.sr_trainer import attention_proxy_loss, lr_proxy_disparities

    shift = 6
    left, right = textured_pair(32, 160, shift, seed=2, blocks=True)
    proxy_left, proxy_right = lr_proxy_disparities(left, right, 2)  # 48 px search at x2: a 160 px wide patch
    assert proxy_left.shape == proxy_right.shape == (32, 160)
    assert np.isfinite(proxy_left).mean() > 0.2 and np.isfinite(proxy_right).mean() > 0.2
    assert np.nanmedian(proxy_left) == pytest.approx(shift, abs=0.5)
    assert np.nanmedian(proxy_right) == pytest.approx(shift, abs=0.5)

    width = 24

    def peaked(offset: int) -> torch.Tensor:  # row i puts 0.9 at column i + offset (clamped), the rest spread
        attention = torch.full((1, 1, width, width), 0.1 / (width - 1))
        for i in range(width):
            attention[0, 0, i, min(max(i + offset, 0), width - 1)] = 0.9
        return attention

    known = torch.full((1, 1, 1, width), float(shift))
    right_answer = {"right_to_left": peaked(-shift), "left_to_right": peaked(shift)}
    wrong_answer = {"right_to_left": peaked(-shift + 3), "left_to_right": peaked(shift - 3)}
    assert float(attention_proxy_loss(right_answer, known, known)) < float(
        attention_proxy_loss(wrong_answer, known, known)) - 1.0
    unknown = torch.full_like(known, float("nan"))
    assert float(attention_proxy_loss(right_answer, unknown, unknown)) == 0.0
    half = known.clone()
    half[..., ::2] = float("nan")  # only the known half counts: the same mean on this uniform example
    assert float(attention_proxy_loss(right_answer, half, half)) == pytest.approx(
        float(attention_proxy_loss(right_answer, known, known)), rel=1e-5)


def test_detached_attention_input_keeps_the_attention_terms_out_of_the_shared_features():
    """BiPAM.detach_input (train-sr --detach-attention-input): the attention's own terms train biPAM only; the
    per-view features get no gradient from them (they still do from the reconstruction), and the output is the
    same either way."""
    from stereo_depth_ros.training.sr_trainer import attention_losses

    torch.manual_seed(0)
    network = build_network({"scale": 2, "stereo": True, "channels": 8, "growth": 4, "num_rdb": 1})
    left, right = torch.rand(1, 3, 8, 24), torch.rand(1, 3, 8, 24)
    outputs = {}
    for detach in (False, True):
        network.zero_grad()
        network.bipam.detach_input = detach
        sr_left, _, attention = network(left, right, return_attention=True)
        sum(attention_losses(attention, left, right).values()).backward()
        outputs[detach] = (sr_left.detach(), network.head.weight.grad, network.bipam.query.weight.grad)
    assert torch.equal(outputs[False][0], outputs[True][0])
    assert outputs[False][1] is not None and float(outputs[False][1].abs().sum()) > 0
    assert outputs[True][1] is None or float(outputs[True][1].abs().sum()) == 0
    assert float(outputs[True][2].abs().sum()) > 0


def test_attention_statistics_measure_the_match_against_sgbm():
    """eval-sr-dataset --attention: an attention that puts its peak at the pair's true shift scores a match error
    of 0 px, one that is 3 px off scores 3 px, and the peak weight and valid mask are the attention's."""
    from stereo_depth_ros.commands.sr import attention_statistics

    shift, height, width = 6, 16, 160
    left, right = textured_pair(height, width, shift, seed=3, blocks=True)

    class FixedAttention:  # stands in for the network: returns a given attention
        bipam, scale = object(), 2

        def __init__(self, offset: int) -> None:
            self.offset = offset

        def eval(self):
            return self

        def __call__(self, lr_left, lr_right, return_attention=False):
            attention = torch.zeros(1, height, width, width)
            for x in range(width):
                attention[0, :, x, min(max(x - self.offset, 0), width - 1)] = 1.0
            return None, None, {"right_to_left": attention, "valid_left": torch.full((1, 1, height, width), 0.5)}

    exact = attention_statistics(FixedAttention(shift), left, right)
    assert exact["peak_weight"] == 1.0 and exact["valid_mask"] == 0.5 and exact["proxy_pixels_pct"] > 10
    assert exact["match_error_px"] == pytest.approx(0.0, abs=0.5) and exact["within_1px_pct"] > 90
    off = attention_statistics(FixedAttention(shift + 3), left, right)
    assert off["match_error_px"] == pytest.approx(3.0, abs=0.5) and off["within_1px_pct"] < 10
    with pytest.raises(ValueError, match="biPAM"):
        attention_statistics(build_network({"scale": 2, "stereo": False, "channels": 8, "growth": 4}), left, right)


def test_fusion_parameter_groups_scale_only_the_fusion_learning_rate():
    from stereo_depth_ros.training.sr_trainer import fusion_parameter_groups

    for stereo in (True, False):
        network = build_network({"scale": 2, "stereo": stereo, "channels": 8, "growth": 4})
        rest, fusion = fusion_parameter_groups(network, 1e-3, 10.0)
        assert rest["lr"] == 1e-3 and fusion["lr"] == pytest.approx(1e-2)
        assert [id(p) for p in fusion["params"]] == [id(p) for p in network.refine[0].parameters()]
        assert sorted(id(p) for p in rest["params"] + fusion["params"]) == sorted(id(p) for p in network.parameters())
    with pytest.raises(ValueError, match="fusion_lr_scale"):
        fusion_parameter_groups(network, 1e-3, 0.0)


@pytest.mark.parametrize("stereo", [True, False])
def test_fusion_only_fine_tuning_changes_the_fusion_and_bipam_only(tmp_path, stereo):
    """--trainable fusion: the fusion convolution (and biPAM) learn, every other tensor, batch-norm statistics
    included, stays exactly as the init file had it; a wrong value is refused."""
    from safetensors.torch import load_file

    from stereo_depth_ros.models.stereo_sr import SINGLE_ARCHITECTURE, STEREO_ARCHITECTURE
    from stereo_depth_ros.training.sr_trainer import TrainSuperResolutionOptions, train_super_resolution

    config = {"scale": 2, "channels": 8, "growth": 4, "rdb_layers": 2, "num_rdb": 1, "num_rdb_reconstruction": 1,
              "stereo": stereo}
    start = build_network(config)
    with torch.no_grad():  # as after training: an all-zero last layer would pass no gradient back to the fusion
        start.tail.weight.normal_(0.0, 0.1)
    init = tmp_path / "start.safetensors"
    save_weights(start, init, STEREO_ARCHITECTURE if stereo else SINGLE_ARCHITECTURE, start.config)
    left, right = textured_pair(32, 112, 4, seed=0, blocks=True)
    for side, image in (("left", left), ("right", right)):
        (tmp_path / "set" / side).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "set" / side / "0.png"), image)
    out = tmp_path / "run" / "fusion.safetensors"
    options = dict(scale=2, out=str(out), model="stereo" if stereo else "single", data=[str(tmp_path / "set")],
                   exclude=None, steps=3, batch_size=1, patch=(16, 48), lr=1e-2, checkpoint_every=3, threads=1,
                   progress=False, init=str(init))
    card = train_super_resolution(TrainSuperResolutionOptions(**options, trainable="fusion"))
    assert card["options"]["trainable"] == "fusion"
    before, after = load_file(init), load_file(out)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert "refine.0.weight" in changed
    assert all(name.startswith(("refine.0.", "bipam.")) for name in changed), sorted(changed)
    if stereo:
        assert any(name.startswith("bipam.") for name in changed)
    with pytest.raises(ValueError, match="trainable"):
        train_super_resolution(TrainSuperResolutionOptions(**{**options, "out": str(tmp_path / "x.safetensors")},
                                                           trainable="features"))


def test_psnr_and_ssim_on_hand_examples():
    image = np.random.default_rng(1).integers(0, 256, (16, 20, 3)).astype(np.uint8)
    assert psnr(image, image) == math.inf and ssim(image, image) == pytest.approx(1.0)
    zeros, grey = np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 51, np.uint8)
    assert psnr(zeros, grey) == pytest.approx(10 * math.log10(1 / 0.2 ** 2))  # MSE 0.04 on [0, 1]
    half = np.zeros((8, 8, 3), np.float32)
    half[:4] = 0.1  # MSE 0.005
    assert psnr(half, np.zeros_like(half)) == pytest.approx(10 * math.log10(1 / 0.005))
    metrics = pair_metrics(zeros, image[:8, :8], zeros, image[:8, :8])
    assert metrics["psnr_left_db"] == math.inf and metrics["psnr_right_db"] == math.inf
    metrics = pair_metrics(grey, zeros, zeros, zeros)
    assert metrics["psnr_db"] == math.inf  # the mean of a finite and an infinite PSNR
    with pytest.raises(ValueError, match="differ in size"):
        psnr(zeros, image)


def test_degradation_halves_the_size_and_bicubic_restores_smooth_images():
    left, _ = textured_pair(64, 96, 0)
    small = bicubic_downscale(left, 2)
    assert small.shape == (32, 48, 3) and small.dtype == np.uint8
    assert bicubic_downscale(left[:63, :95], 4).shape == (15, 23, 3)  # cropped to multiples of the scale
    assert psnr(bicubic_upscale(small, 2), left) > 25  # a smooth texture survives x2
    with pytest.raises(ValueError, match="scale"):
        bicubic_downscale(left, 3)


# Training -----------------------------------------------------------------------------------------------------

def test_short_training_lowers_the_loss(tmp_path):
    from stereo_depth_ros.training.sr_trainer import TrainSuperResolutionOptions, train_super_resolution

    # One pair, cropped to its whole size: every step sees the same batch, so the loss curve is not crop noise.
    for index in range(1):
        left, right = textured_pair(32, 224, 4, seed=index, blocks=True)
        for side, image in (("left", left), ("right", right)):
            (tmp_path / "set" / side).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(tmp_path / "set" / side / f"{index}.png"), image)
    out = tmp_path / "run" / "sr.safetensors"
    card = train_super_resolution(TrainSuperResolutionOptions(
        scale=2, out=str(out), data=[str(tmp_path / "set")], exclude=None, steps=40, batch_size=1, patch=(16, 112),
        lr=3e-3, channels=8, growth=4, checkpoint_every=40, threads=1, progress=False, attention_proxy_weight=0.01))
    rows = list(csv_rows(out.with_name("sr.losses.csv")))
    first, last = np.mean([r["l1"] for r in rows[:5]]), np.mean([r["l1"] for r in rows[-5:]])
    assert last < 0.9 * first, (first, last)
    assert card["steps"] == 40 and card["parameters"] > 0 and out.is_file()
    assert rows[0]["photometric"] > 0  # the stereo network's attention terms are in the loss
    assert rows[0]["attention_proxy"] > 0  # and the proxy term, from the pair's confident SGBM matches
    estimator = create_estimator("stereo-sr-x2", weights=str(out), backend="torch")
    sr_left, sr_right = estimator.super_resolve(*textured_pair(20, 30, 3))
    assert sr_left.shape == sr_right.shape == (40, 60, 3)


def test_fine_tuning_starts_from_the_given_weights(tmp_path):
    """--init: the network of the weights file (its sizes, its tensors) is what trains; another scale or the other
    model family is refused."""
    from stereo_depth_ros.models.stereo_sr import STEREO_ARCHITECTURE, build_network
    from stereo_depth_ros.models.weights import WeightsError, save_weights
    from stereo_depth_ros.training.sr_trainer import TrainSuperResolutionOptions, initial_network, \
        train_super_resolution

    config = {"scale": 2, "channels": 8, "growth": 4, "rdb_layers": 2, "num_rdb": 1, "num_rdb_reconstruction": 1,
              "stereo": True}
    start = build_network(config)
    save_weights(start, tmp_path / "start.safetensors", STEREO_ARCHITECTURE, start.config)
    loaded = initial_network(tmp_path / "start.safetensors", 2, True)
    for name, tensor in start.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    with pytest.raises(ValueError, match="x2, but --scale is 4"):
        initial_network(tmp_path / "start.safetensors", 4, True)
    with pytest.raises(WeightsError):
        initial_network(tmp_path / "start.safetensors", 2, False)

    left, right = textured_pair(32, 48, 4, seed=0, blocks=True)
    for side, image in (("left", left), ("right", right)):
        (tmp_path / "set" / side).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "set" / side / "0.png"), image)
    out = tmp_path / "run" / "tuned.safetensors"
    card = train_super_resolution(TrainSuperResolutionOptions(
        scale=2, out=str(out), data=[str(tmp_path / "set")], exclude=None, steps=2, batch_size=1, patch=(16, 24),
        channels=32, checkpoint_every=2, threads=1, progress=False, init=str(tmp_path / "start.safetensors")))
    assert card["config"] == start.config  # the init's sizes, not the options' channels=32


def test_stereo_fine_tuning_may_start_from_the_single_image_weights(tmp_path):
    """--init with single-image weights for the stereo model: every shared tensor is the single-image network's
    (the fusion's weights for the other view folded into its own view's), biPAM is new, and the stereo network's
    output starts exactly at the single-image network's."""
    from stereo_depth_ros.models.stereo_sr import SINGLE_ARCHITECTURE, build_network
    from stereo_depth_ros.models.weights import save_weights
    from stereo_depth_ros.training.sr_trainer import initial_network

    config = {"scale": 2, "channels": 8, "growth": 4, "rdb_layers": 2, "num_rdb": 1, "num_rdb_reconstruction": 1,
              "stereo": False}
    torch.manual_seed(0)
    single = build_network(config)
    torch.nn.init.normal_(single.tail.weight, std=0.05)  # a trained tail (zero at initialisation) makes the test bite
    save_weights(single, tmp_path / "single.safetensors", SINGLE_ARCHITECTURE, single.config)
    stereo = initial_network(tmp_path / "single.safetensors", 2, True).eval()
    assert stereo.stereo and stereo.bipam is not None
    shared = single.state_dict()
    for name, tensor in stereo.state_dict().items():
        if name.startswith("bipam."):
            assert name not in shared
        elif name == "refine.0.weight":
            own, other = shared[name][:, :8], shared[name][:, 8:]
            assert torch.allclose(tensor[:, :8], own + other) and not tensor[:, 8:].any()
        else:
            assert torch.equal(tensor, shared[name]), name
    left, right = (torch.from_numpy(image[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255
                   for image in textured_pair(24, 40, 3))
    with torch.no_grad():
        single_left, _ = single.eval()(left, right)
        stereo_left, _, attention = stereo(left, right, return_attention=True)
    assert torch.allclose(stereo_left, single_left, atol=1e-5)
    assert float(attention["valid_left"].max()) > 0  # biPAM does run; its features just carry no weight yet
    with pytest.raises(ValueError, match="x2, but --scale is 4"):
        initial_network(tmp_path / "single.safetensors", 4, True)


def csv_rows(path):
    import csv

    with open(path) as stream:
        for row in csv.DictReader(stream):
            yield {key: float(value) for key, value in row.items()}


# eval-sr ------------------------------------------------------------------------------------------------------

def tiny_weights(path, scale: int, stereo: bool):
    network = build_network({"scale": scale, "stereo": stereo, "channels": 8, "growth": 4})
    with torch.no_grad():
        network.tail.bias.fill_(0.02)  # not bicubic: a constant brightening, which must lower PSNR here
    save_weights(network, path, network.ARCHITECTURE, network.config)
    return path


def test_eval_sr_json_has_exactly_the_fields(tmp_path):
    from stereo_depth_ros.cli import main

    left, right = textured_pair(48, 64, 4)
    cv2.imwrite(str(tmp_path / "l.png"), left)
    cv2.imwrite(str(tmp_path / "r.png"), right)
    stereo = tiny_weights(tmp_path / "s.safetensors", 2, True)
    single = tiny_weights(tmp_path / "i.safetensors", 2, False)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["eval-sr", "--left", str(tmp_path / "l.png"), "--right", str(tmp_path / "r.png"), "--scale", "2",
                     "--model", "single-image-sr-x2", "--model", "stereo-sr-x2", "--weights",
                     f"stereo-sr-x2={stereo}", "--weights", f"single-image-sr-x2={single}", "--backend", "torch",
                     "--json", "--figure", str(tmp_path / "figure.png")])
    assert code == 0
    document = json.loads(out.getvalue())
    assert list(document) == ["rows"]
    assert [row["method"] for row in document["rows"]] == ["bicubic", "single-image-sr", "stereo-sr"]
    for row in document["rows"]:
        assert set(row) == {"method", "scale", "psnr_db", "ssim", "psnr_left_db", "psnr_right_db", "runtime_ms"}
        assert row["scale"] == 2 and row["runtime_ms"] >= 0
        assert row["psnr_db"] == pytest.approx((row["psnr_left_db"] + row["psnr_right_db"]) / 2)
    bicubic = document["rows"][0]
    expected = psnr(bicubic_upscale(bicubic_downscale(left, 2), 2), left)
    assert bicubic["psnr_left_db"] == pytest.approx(expected)
    assert document["rows"][2]["psnr_db"] < bicubic["psnr_db"]  # the brightened output scores lower
    assert (tmp_path / "figure.png").stat().st_size > 0


def test_registry_entries():
    for name, scale in (("stereo-sr-x2", 2), ("stereo-sr-x4", 4), ("single-image-sr-x2", 2),
                        ("single-image-sr-x4", 4)):
        spec = model_spec(name)
        assert spec.family == "super-resolution" and spec.input_kind == "stereo-pair"
        assert spec.output_kinds == ("image-pair",) and f"x{scale}" in spec.default_weights.name
    with pytest.raises(ValueError, match="scale x2"):
        create_estimator("stereo-sr-x4", weights=str(tiny_weights(
            os.path.join(os.environ.get("TMPDIR", "/tmp"), f"sr_scale_{os.getpid()}.safetensors"), 2, True)))


# Node ---------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sr_context():
    pytest.importorskip("rclpy", reason="the ROS layer needs the ROS 2 Python packages (rclpy, ...)")
    from ros_rig import ros_context

    yield from ros_context(int(os.environ.get("ROS_DOMAIN_ID", "55")))


def test_node_publishes_the_pair_and_scaled_camera_info(tmp_path, sr_context):
    from builtin_interfaces.msg import Time
    from ros_rig import exchange
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header

    from stereo_depth_ros.ros import conversions
    from stereo_depth_ros.ros.bringup_spec import NODE_KINDS
    from stereo_depth_ros.ros.sr_node import SuperResolutionNode

    assert NODE_KINDS["super_resolution_node"].class_name == "SuperResolutionNode"
    weights = tiny_weights(tmp_path / "node.safetensors", 2, True)
    left, right = textured_pair(24, 32, 3)
    header = Header(stamp=Time(sec=3, nanosec=9), frame_id="left_optical")
    fx, cx, cy, baseline = 100.0, 15.5, 11.5, 0.004

    def info(tx):
        return CameraInfo(header=header, width=32, height=24, k=[fx, 0.0, cx, 0.0, fx, cy, 0.0, 0.0, 1.0],
                          p=[fx, 0.0, cx, tx, 0.0, fx, cy, 0.0, 0.0, 0.0, 1.0, 0.0])

    inputs = {"left/image_rect": conversions.numpy_to_image(left, "bgr8", header),
              "right/image_rect": conversions.numpy_to_image(right, "bgr8", header),
              "left/camera_info": info(0.0), "right/camera_info": info(-fx * baseline)}
    outputs = {"super_resolved/left/image_rect": Image, "super_resolved/right/image_rect": Image,
               "super_resolved/left/camera_info": CameraInfo, "super_resolved/right/camera_info": CameraInfo}
    received = exchange(sr_context, SuperResolutionNode, {"weights": str(weights), "backend": "torch"}, inputs,
                        outputs, timeout=30.0, prefix="sr_test")
    sr_left = conversions.image_to_bgr8(received["super_resolved/left/image_rect"], "left")
    sr_right = conversions.image_to_bgr8(received["super_resolved/right/image_rect"], "right")
    expected_left, expected_right = create_estimator("stereo-sr-x2", weights=str(weights),
                                                     backend="torch").super_resolve(left, right)
    np.testing.assert_array_equal(sr_left, expected_left)
    np.testing.assert_array_equal(sr_right, expected_right)
    left_info, right_info = received["super_resolved/left/camera_info"], received["super_resolved/right/camera_info"]
    assert (left_info.width, left_info.height) == (64, 48)
    assert received["super_resolved/left/image_rect"].header.stamp.sec == 3
    # The stereo node's checks accept the pair: sizes match and the calibration reads fx and the baseline.
    conversions.check_camera_info_size(left_info, received["super_resolved/left/image_rect"], "left")
    conversions.check_camera_info_size(right_info, received["super_resolved/right/image_rect"], "right")
    camera = conversions.camera_info_calibration(left_info, right_info)
    assert camera.focal_px == pytest.approx(2 * fx)
    assert camera.baseline_m == pytest.approx(baseline)  # depth = f B / d unchanged with f and d doubled
    assert list(right_info.k)[2] == pytest.approx(2 * cx) and list(right_info.p)[3] == pytest.approx(-2 * fx * baseline)


def test_bringup_chains_the_sr_node_in_front_of_the_stereo_node(tmp_path, sr_context):
    """``super_resolution`` (launch argument, bringup option): a low-resolution pair published on the camera topics
    comes out of the stereo node as a disparity of the super-resolved size with the scaled focal length, and both
    nodes stay lazy until the stereo node's output has a subscriber."""
    import time

    import rclpy
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header
    from stereo_msgs.msg import DisparityImage

    from stereo_depth_ros.ros import bringup_spec, conversions
    from stereo_depth_ros.ros.bringup import start_nodes
    from stereo_depth_ros.ros.sr_node import OUTPUT_PREFIX, SuperResolutionNode

    chain = bringup_spec.OPTIONAL_NODES["super_resolution"]
    assert [target for _, target in chain.feed_remappings] == list(SuperResolutionNode.OUTPUT_TOPICS)
    # the chain feeds every stereo input from the SR output of the same name
    stereo_inputs = [remap.topic for remap in bringup_spec.NODE_KINDS[chain.feeds].remaps]
    assert [topic for topic, _ in chain.feed_remappings] == stereo_inputs
    weights = tiny_weights(tmp_path / "chain.safetensors", 2, True)
    params = tmp_path / "chain.yaml"
    params.write_text("/**/stereo_depth_node:\n  ros__parameters:\n    method: sgbm\n    max_disparity: 32\n"
                      f"/**/super_resolution_node:\n  ros__parameters:\n    weights: {weights}\n"
                      "    backend: torch\n")
    namespace = f"/sr_chain_{os.getpid()}"
    camera = {"left_image": "/chain_camera/left", "right_image": "/chain_camera/right",
              "left_camera_info": "/chain_camera/left_info", "right_camera_info": "/chain_camera/right_info"}
    left, right = textured_pair(48, 64, 4)
    header = Header(stamp=Time(sec=7, nanosec=5), frame_id="chain_left_optical")
    fx, baseline = 100.0, 0.004

    def info(tx):
        return CameraInfo(header=header, width=64, height=48, k=[fx, 0.0, 31.5, 0.0, fx, 23.5, 0.0, 0.0, 1.0],
                          p=[fx, 0.0, 31.5, tx, 0.0, fx, 23.5, 0.0, 0.0, 0.0, 1.0, 0.0])

    messages = {camera["left_image"]: conversions.numpy_to_image(left, "bgr8", header),
                camera["right_image"]: conversions.numpy_to_image(right, "bgr8", header),
                camera["left_camera_info"]: info(0.0), camera["right_camera_info"]: info(-fx * baseline)}
    bringup = start_nodes(params, namespace=namespace, remappings=camera, context=sr_context,
                          optional=("super_resolution",))
    helper = rclpy.create_node("sr_chain_helper", namespace=namespace, context=sr_context)
    try:
        stereo, sr = bringup.nodes
        assert (stereo.get_name(), sr.get_name()) == ("stereo_depth_node", "super_resolution_node")
        publishers = {topic: helper.create_publisher(type(msg), topic, 5) for topic, msg in messages.items()}
        bringup.executor.add_node(helper)
        time.sleep(1.0)
        assert not stereo.inputs_subscribed and not sr.inputs_subscribed  # nobody wants a disparity yet
        received = []
        helper.create_subscription(DisparityImage, "disparity", received.append, 5)
        deadline, last = time.monotonic() + 40.0, 0.0
        while not received and time.monotonic() < deadline:
            if sr.inputs_subscribed and time.monotonic() - last > 0.5:
                for topic, msg in messages.items():
                    publishers[topic].publish(msg)
                last = time.monotonic()
            time.sleep(0.05)
        assert received, f"no disparity (stereo problems {dict(stereo.problems)}, sr problems {dict(sr.problems)})"
        assert {f"{namespace}/{OUTPUT_PREFIX}left/image_rect", f"{namespace}/{OUTPUT_PREFIX}right/camera_info"} <= {
            s.topic_name for s in stereo.subscriptions}
        assert set(camera.values()) <= {s.topic_name for s in sr.subscriptions}
        disparity = received[0]
        assert (disparity.image.width, disparity.image.height) == (128, 96)  # the super-resolved size
        assert disparity.f == pytest.approx(2 * fx) and disparity.t == pytest.approx(baseline)
        assert disparity.header.stamp == header.stamp and disparity.header.frame_id == header.frame_id
    finally:
        helper.destroy_node()
        bringup.shutdown()


@pytest.mark.parametrize("scale", [2, 4])
def test_packaged_weights_beat_bicubic_on_a_held_out_pair(shared_data, scale):
    from stereo_depth_ros.commands.sr import prepare_pair
    from stereo_depth_ros.images import read_image_bgr

    folder = shared_data / "endoscopic_stereo" / "bdis_invivo" / "6" / "images_rectified"
    hr_left, hr_right, lr_left, lr_right = prepare_pair(read_image_bgr(folder / "left" / "201.png"),
                                                        read_image_bgr(folder / "right" / "201.png"), scale)
    sr_left, sr_right = create_estimator(f"stereo-sr-x{scale}", backend="torch").super_resolve(lr_left, lr_right)
    bicubic = pair_metrics(bicubic_upscale(lr_left, scale), bicubic_upscale(lr_right, scale), hr_left, hr_right)
    ours = pair_metrics(sr_left, sr_right, hr_left, hr_right)
    # Held out from training (config/splits/bdis_invivo_test.txt); swapped views or a wrong colour order fail this.
    assert ours["psnr_db"] > bicubic["psnr_db"] + 0.5, (ours, bicubic)


def test_eval_sr_dataset_by_set_averages_each_set(tmp_path):
    """eval-sr-dataset --by-set: one table per set (folder above left/), each the mean over its own pairs; the
    overall rows are the mean over every pair (so the pair-weighted mean of the set rows)."""
    from stereo_depth_ros.cli import main

    entries = []
    for set_name, seeds in (("set_a", (1, 2)), ("set_b", (3,))):
        for seed in seeds:
            left, right = textured_pair(32, 48, 2, seed=seed)
            for view, image in (("left", left), ("right", right)):
                (tmp_path / set_name / view).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(tmp_path / set_name / view / f"{seed}.png"), image)
            entries.append(f"{set_name}/left/{seed}.png")
    (tmp_path / "pairs.txt").write_text("\n".join(entries) + "\n")
    single = tiny_weights(tmp_path / "i.safetensors", 2, False)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["eval-sr-dataset", "--pairs", str(tmp_path / "pairs.txt"), "--data-root", str(tmp_path),
                     "--scale", "2", "--model", "single-image-sr-x2", "--weights", f"single-image-sr-x2={single}",
                     "--backend", "torch", "--no-border-crop", "--by-set", "--json"])
    assert code == 0
    document = json.loads(out.getvalue())
    assert [frame["set"] for frame in document["frames"]] == ["set_a", "set_a", "set_b"]
    assert list(document["sets"]) == ["set_a", "set_b"]
    for index, method in enumerate(["bicubic", "single-image-sr"]):
        frames = [next(r for r in frame["rows"] if r["method"] == method) for frame in document["frames"]]
        assert document["sets"]["set_a"][index]["psnr_db"] == pytest.approx(
            (frames[0]["psnr_db"] + frames[1]["psnr_db"]) / 2)
        assert document["sets"]["set_b"][index]["psnr_db"] == pytest.approx(frames[2]["psnr_db"])
        assert document["rows"][index]["psnr_db"] == pytest.approx(
            (2 * document["sets"]["set_a"][index]["psnr_db"] + document["sets"]["set_b"][index]["psnr_db"]) / 3)
    assert document["frames"][0]["rows"][0]["psnr_db"] != document["frames"][2]["rows"][0]["psnr_db"]
