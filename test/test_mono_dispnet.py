"""The self-supervised sub-pixel DispNet (paper 004): network structure, loss terms, flip post-processing, a short
training run, the metric estimator, and (with the shared data) the packaged weights' metric scale on BDIS synthetic
sets 32 and 33."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from stereo_depth_ros.losses import edge_aware_smoothness, left_right_consistency, warp_left_to_right
from stereo_depth_ros.models.mono_dispnet import (DEFAULT_WEIGHTS, DispNetInference, FactorisedResidualBlock,
                                                  SpatialChannelAttention, SubPixelDispNet, SubPixelBlock,
                                                  UpConvBlock, flip_post_process, save_weights)
from stereo_depth_ros.models.registry import create_estimator, model_spec
from stereo_depth_ros.models.weights import WeightsError
from stereo_depth_ros.training.mono_self_supervised import (ResizedStereoDataset, TrainDispNetOptions, dispnet_loss,
                                                            train_dispnet)

TINY = {"encoder_channels": (8, 8, 16, 16, 32), "decoder_channels": (16, 16, 8, 8, 8)}
DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"


def smooth_texture(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(1, 3, H, W) random texture blurred a little (so that bilinear sampling and downsampling keep it)."""
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.random((height, width, 3)).astype(np.float32), (0, 0), 1.5)
    image = (image - image.min()) / (image.max() - image.min())
    return torch.from_numpy(image).permute(2, 0, 1)[None].contiguous()


def constant_pyramid(fraction_left: float, fraction_right: float, height: int, width: int) -> list[torch.Tensor]:
    return [torch.stack((torch.full((1, height >> s, width >> s), fraction_left),
                         torch.full((1, height >> s, width >> s), fraction_right)), 1) for s in range(4)]


def test_pyramids_of_both_views_at_four_scales():
    torch.manual_seed(0)
    network = SubPixelDispNet(**TINY).eval()
    pyramid = network.forward_pyramid(torch.rand(2, 3, 64, 96))
    assert [tuple(level.shape) for level in pyramid] == [(2, 2, 64, 96), (2, 2, 32, 48), (2, 2, 16, 24),
                                                         (2, 2, 8, 12)]
    for level in pyramid:
        assert float(level.detach().min()) > 0 and float(level.detach().max()) < network.max_disparity_fraction
    assert not torch.equal(pyramid[0][:, 0], pyramid[0][:, 1])  # two views, not one map twice
    assert tuple(network(torch.rand(1, 3, 64, 96)).shape) == (1, 1, 64, 96)


def test_structure_factorised_convolutions_attention_and_decoder():
    network = SubPixelDispNet()
    blocks = [m for m in network.modules() if isinstance(m, FactorisedResidualBlock)]
    assert len(blocks) == 8  # four groups of two, as ResNet18
    for block in blocks:
        assert block.conv_1x3.kernel_size == (1, 3) and block.conv_3x1.kernel_size == (3, 1)
    groups = nn.ModuleList([network.group1, network.group2, network.group3, network.group4])
    assert not [m for m in groups.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert sum(isinstance(m, UpConvBlock) for m in network.modules()) == 2
    assert sum(isinstance(m, SubPixelBlock) for m in network.modules()) == 3
    assert sum(isinstance(m, nn.PixelShuffle) for m in network.modules()) == 3
    seen = {}
    network.attention.register_forward_hook(lambda module, inputs, output: seen.update(shape=inputs[0].shape))
    network.eval()(torch.rand(1, 3, 128, 192))
    assert isinstance(network.attention, SpatialChannelAttention)
    assert tuple(seen["shape"][2:]) == (128 // 32, 192 // 32)
    assert sum(p.numel() for p in network.parameters()) * 4 < 10e6  # float32 weights file under 10 MB


def test_attention_changes_the_features():
    torch.manual_seed(0)
    attention = SpatialChannelAttention(16)
    features = torch.rand(1, 16, 4, 6)
    out = attention(features)
    assert out.shape == features.shape and not torch.allclose(out, features)


def test_bad_input_is_refused():
    network = SubPixelDispNet(**TINY)
    with pytest.raises(ValueError, match="multiples of 32"):
        network(torch.rand(1, 3, 60, 96))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        network(torch.rand(1, 1, 64, 96))
    with pytest.raises(ValueError, match="baseline_m"):
        SubPixelDispNet(focal_length_px=520.0, image_width_px=640, baseline_m=None)


def test_warp_left_to_right_samples_at_x_plus_d():
    left = torch.arange(10.0).view(1, 1, 1, 10)
    warped, in_view = warp_left_to_right(left, torch.full((1, 1, 1, 10), 3.0))
    assert warped[0, 0, 0, :7].tolist() == [3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    assert in_view[0, 0, 0].tolist() == [1.0] * 7 + [0.0] * 3


def test_appearance_is_lower_for_the_true_disparity_of_a_shifted_pair():
    height, width, shift = 64, 128, 8
    scene = smooth_texture(height, width + shift)
    left, right = scene[..., :width], scene[..., shift:]  # left(x) = right(x - shift): disparity = shift
    right_true = dispnet_loss(constant_pyramid(shift / width, shift / width, height, width), left, right)
    for wrong in (shift - 4, shift + 4):
        wrong_loss = dispnet_loss(constant_pyramid(wrong / width, wrong / width, height, width), left, right)
        assert float(right_true["appearance"]) < 0.5 * float(wrong_loss["appearance"])
    swapped = dispnet_loss(constant_pyramid(shift / width, shift / width, height, width), right, left)
    assert float(right_true["appearance"]) < 0.5 * float(swapped["appearance"])  # a swapped view must show


def test_smoothness_zero_on_a_constant_map_and_positive_on_a_ramp():
    image = smooth_texture(32, 48)
    assert float(edge_aware_smoothness(torch.full((1, 1, 32, 48), 7.0), image)) == 0.0
    ramp = torch.linspace(1, 10, 48).view(1, 1, 1, 48).expand(1, 1, 32, 48)
    assert float(edge_aware_smoothness(ramp, image)) > 0.0
    loss = dispnet_loss(constant_pyramid(0.1, 0.1, 64, 96), smooth_texture(64, 96), smooth_texture(64, 96, 1))
    assert float(loss["smoothness"]) == 0.0


def test_left_right_consistency_zero_when_consistent():
    same = torch.full((1, 1, 16, 32), 4.0)
    assert float(left_right_consistency(same, same)) == 0.0
    # A fronto-parallel plane seen from both views has one disparity; 5 vs 3 px differ by 2 px in each direction.
    assert float(left_right_consistency(torch.full((1, 1, 16, 32), 5.0), torch.full((1, 1, 16, 32), 3.0))) \
        == pytest.approx(4.0)
    loss = dispnet_loss(constant_pyramid(0.1, 0.1, 64, 96), smooth_texture(64, 96), smooth_texture(64, 96, 1))
    assert float(loss["left_right"]) == pytest.approx(0.0, abs=1e-6)


def test_flip_post_processing_ramps_and_mean():
    width = 41
    plain, flipped = torch.zeros(1, 1, 2, width), torch.ones(1, 1, 2, width)
    result = flip_post_process(plain, flipped)[0, 0, 0]
    x = np.linspace(0, 1, width)
    assert torch.allclose(result[x <= 0.05], torch.ones(1))  # left 5 %: the flipped image's disparity
    assert torch.allclose(result[x >= 0.95], torch.zeros(1))  # right 5 %: the image's own
    middle = (x >= 0.1) & (x <= 0.9)
    assert torch.allclose(result[middle], torch.full((1,), 0.5))  # the mean in the middle
    ramp = result[(x > 0.05) & (x < 0.1)]
    assert ramp.numel() > 0 and bool(((ramp > 0.5) & (ramp < 1.0)).all())
    assert bool((ramp[1:] <= ramp[:-1]).all())
    with pytest.raises(ValueError, match="one shape"):
        flip_post_process(plain, flipped[..., :-1])


def test_flip_post_processing_in_the_network_uses_the_mirror_image():
    torch.manual_seed(0)
    network = SubPixelDispNet(**TINY).eval()
    image = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        plain = DispNetInference(network, False)(image)
        post = DispNetInference(network, True)(image)
        mirrored = torch.flip(network(torch.flip(image, (3,))), (3,))
    assert torch.allclose(post, flip_post_process(plain, mirrored), atol=1e-6)
    assert not torch.allclose(post, plain)


def write_motorcycle_pairs(folder: Path, count: int = 3) -> None:
    from stereo_depth_ros.evaluation.datasets import load_skimage_motorcycle

    left, right, _ = load_skimage_motorcycle(scale=0.25)
    (folder / "left").mkdir(parents=True)
    (folder / "right").mkdir(parents=True)
    height, width = left.shape[:2]
    for index in range(count):  # crops at different places: different pairs, the same rig
        x = index * (width // 8)
        cv2.imwrite(str(folder / "left" / f"{index}.png"), left[:, x:x + 3 * width // 4])
        cv2.imwrite(str(folder / "right" / f"{index}.png"), right[:, x:x + 3 * width // 4])


def test_resized_dataset_keeps_whole_pairs(tmp_path):
    write_motorcycle_pairs(tmp_path / "pairs")
    dataset = ResizedStereoDataset([tmp_path / "pairs"], (64, 96))
    item = dataset[0]
    assert tuple(item["left"].shape) == (3, 64, 96) and tuple(item["valid"].shape) == (1, 64, 96)
    source = cv2.imread(str(tmp_path / "pairs" / "left" / "0.png"))
    expected = cv2.resize(source, (96, 64), interpolation=cv2.INTER_AREA)[..., ::-1].astype(np.float32) / 255
    assert np.allclose(item["left"].numpy().transpose(1, 2, 0), expected, atol=1e-6)


def test_short_training_lowers_the_loss_and_writes_metric_weights(tmp_path):
    torch.set_num_threads(1)
    write_motorcycle_pairs(tmp_path / "pairs")
    out = tmp_path / "run" / "dispnet.safetensors"
    options = TrainDispNetOptions(data=[str(tmp_path / "pairs")], out=str(out), steps=40, batch_size=2,
                                  input_size=(64, 96), lr=2e-3, exclude=None, checkpoint_every=20,
                                  device="cpu", progress=False, focal_length_px=100.0, image_width_px=96,
                                  baseline_m=0.05, **TINY)
    card = train_dispnet(options)
    rows = list(csv_rows(out.with_name("dispnet.losses.csv")))
    first = np.mean([float(row["total"]) for row in rows[:5]])
    last = np.mean([float(row["total"]) for row in rows[-5:]])
    assert last < 0.9 * first, (first, last)
    assert card["steps_done"] == 40 and card["ground_truth_used"] is False and len(card["sha256"]) == 64
    estimator = create_estimator("dispnet-subpixel", weights=str(out), backend="torch", input_size=(64, 96))
    assert estimator.metric
    result = estimator.predict(np.full((64, 96, 3), 128, np.uint8))  # the working size: no resizing
    expected = 100.0 * 0.05 / (result["disparity_fraction"] * 96)
    assert np.allclose(result["depth"], expected, rtol=1e-4)


def csv_rows(path: Path):
    import csv

    with path.open() as handle:
        yield from csv.DictReader(handle)


def constant_network(fraction: float, **calibration) -> SubPixelDispNet:
    """A network whose finest head gives ``fraction`` everywhere (weights 0, bias logit(fraction / max))."""
    network = SubPixelDispNet(**TINY, **calibration)
    head = network.heads[0]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(math.log(fraction / (network.max_disparity_fraction - fraction)))
    return network.eval()


def test_estimator_gives_metric_depth_with_the_stored_focal_length_and_baseline(tmp_path):
    path = tmp_path / "constant.safetensors"
    save_weights(constant_network(0.1, focal_length_px=520.0, image_width_px=640, baseline_m=0.005), path)
    estimator = create_estimator("dispnet-subpixel", weights=str(path), backend="torch")
    assert estimator.metric and model_spec("dispnet-subpixel").family == "monocular-depth"
    for height, width in ((480, 640), (240, 320), (288, 720)):  # the same rig at any image size
        depth = estimator.estimate_depth(np.full((height, width, 3), 90, np.uint8))
        assert depth.shape == (height, width) and depth.dtype == np.float32
        # 0.1 of 640 px = 64 px: Z = 520 px * 0.005 m / 64 px = 0.040625 m (not 0.0040625: the unit is metres)
        assert np.allclose(depth, 520.0 * 0.005 / 64.0, rtol=1e-4)
    relative = tmp_path / "relative.safetensors"
    save_weights(constant_network(0.1), relative)
    assert not create_estimator("dispnet-subpixel", weights=str(relative), backend="torch").metric
    with pytest.raises(WeightsError, match="does not exist"):
        create_estimator("dispnet-subpixel", weights=str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match="uint8"):
        estimator.predict(np.zeros((48, 64, 3), np.float32))


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="packaged DispNet weights not built yet")
def test_packaged_weights_load_small_and_metric():
    assert DEFAULT_WEIGHTS.stat().st_size < 10e6
    card = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    assert card["ground_truth_used"] is False
    assert not any("bdis_synthetic/32" in d or "bdis_synthetic/33" in d for d in card["data"])
    assert not any("scared_keyframe" in d for d in card["data"])
    estimator = create_estimator("dispnet-subpixel", backend="torch")
    assert estimator.metric


@pytest.mark.skipif(not (DATA_ROOT / "endoscopic_stereo" / "bdis_synthetic" / "32").is_dir()
                    or not DEFAULT_WEIGHTS.is_file(),
                    reason="needs ../shared/data (BDIS synthetic) and the packaged DispNet weights")
def test_packaged_weights_metric_scale_on_unseen_bdis_synthetic_frames():
    """The metric-depth check (issue 11) on every frame of BDIS synthetic 32 and 33, never trained on (~20 s)."""
    from stereo_depth_ros.training.mono_self_supervised import evaluate_bdis_synthetic

    result = evaluate_bdis_synthetic(DEFAULT_WEIGHTS, (32, 33), DATA_ROOT)
    assert result["frames"] == 52
    rows = result["rows"]
    for mode in ("plain", "flip-post-processing"):
        assert 0.8 <= result["median_scale"][mode] <= 1.25  # metres, not a wrong unit or rig
        assert 0.8 <= rows[f"{mode}/unscaled"]["scale"] <= 1.25
    assert rows["flip-post-processing/median-scaled"]["abs_rel"] < rows["plain/median-scaled"]["abs_rel"]


def test_onnx_backend_agrees_with_torch_with_flip_post_processing(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "random.safetensors"
    save_weights(SubPixelDispNet(**TINY, focal_length_px=520.0, image_width_px=640, baseline_m=0.005).eval(), path)
    image = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
    depths = [create_estimator("dispnet-subpixel", weights=str(path), post_process=True, backend=backend,
                               input_size=(64, 96), cache_dir=str(tmp_path / "onnx")).estimate_depth(image)
              for backend in ("torch", "onnx")]
    assert np.allclose(depths[0], depths[1], rtol=1e-4)
    plain = create_estimator("dispnet-subpixel", weights=str(path), backend="torch", input_size=(64, 96))
    assert not np.allclose(plain.estimate_depth(image), depths[0], rtol=1e-4)
