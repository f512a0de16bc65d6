"""The light U-Net and the original U-Net (paper 001), the monocular estimator wrapper and their weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stereo_depth_ros.models.inference import check_backends_agree
from stereo_depth_ros.models.mono_estimator import MonocularEstimator, working_size
from stereo_depth_ros.models.mono_unet import (LIGHT_ARCHITECTURE, LightUNet, OriginalUNet, build_light_unet,
                                               parameter_count)
from stereo_depth_ros.models.registry import create_estimator, model_spec
from stereo_depth_ros.models.weights import WeightsError, load_weights, save_weights


def test_parameter_counts_match_the_paper():
    light, original = parameter_count(LightUNet()), parameter_count(OriginalUNet())
    assert 1.15e6 <= light <= 1.3e6  # paper 001: 1.22M, the issue: at most 1.3M
    assert abs(original - 17.26e6) < 0.01e6  # paper 001's baseline row
    assert original / light > 14  # "1/14 of the parameters"


@pytest.mark.parametrize("network", [LightUNet, OriginalUNet])
def test_output_is_one_channel_of_the_input_size_in_unit_range(network):
    torch.manual_seed(0)
    out = network().eval()(torch.rand(2, 3, 48, 64)).detach()
    assert out.shape == (2, 1, 48, 64)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not torch.allclose(out[0], out[1])  # different images give different maps


def test_light_unet_bottleneck_is_one_sixteenth_with_101_channels():
    net = LightUNet().eval()
    seen = {}
    net.encoder[3].register_forward_hook(lambda module, inputs, output: seen.setdefault("e4", output))
    net(torch.rand(1, 3, 64, 96))
    assert seen["e4"].shape == (1, 101, 8, 12)  # before the 4th pool: 1/8, after it 1/16
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.decoder.modules())  # no batch norm in decoder


@pytest.mark.parametrize("bad", [torch.rand(1, 1, 32, 32), torch.rand(1, 3, 30, 32), torch.rand(3, 32, 32)])
def test_bad_network_input_is_refused(bad):
    with pytest.raises(ValueError, match="RGB tensor|multiples of 16"):
        LightUNet()(bad)


def test_onnx_export_agrees_with_pytorch():
    torch.manual_seed(1)
    agreement = check_backends_agree(LightUNet(), [torch.rand(1, 3, 64, 80)], ["image"], ["output"], 1e-4)
    assert agreement.agree, agreement


def test_weights_round_trip(tmp_path):
    torch.manual_seed(2)
    net = LightUNet(encoder=(16, 32, 48, 101), decoder=(48, 32, 16, 16)).eval()
    path = tmp_path / "unet.safetensors"
    save_weights(net, path, LIGHT_ARCHITECTURE, net.config)
    loaded, metadata = load_weights(path, LIGHT_ARCHITECTURE, build_light_unet)
    image = torch.rand(1, 3, 32, 32)
    assert torch.equal(loaded(image), net(image))
    with pytest.raises(WeightsError, match="architecture"):
        load_weights(path, "mono-original-unet/v1", build_light_unet)


def test_working_size_policy():
    assert working_size(480, 640, working_width=320, size_multiple=16) == (240, 320)
    assert working_size(1024, 1280, working_width=320, size_multiple=16) == (256, 320)
    assert working_size(288, 720, size_multiple=16) == (288, 720)
    with pytest.raises(ValueError, match="multiple of 16"):
        working_size(480, 640, input_size=(250, 320), size_multiple=16)


class _Brightness(torch.nn.Module):
    def forward(self, image):
        return image[:, :1] * 2.0  # the red channel, doubled


def test_estimator_keeps_channel_order_and_size():
    estimator = MonocularEstimator("demo", _Brightness(), backend="torch", working_width=16, size_multiple=4)
    image = np.zeros((30, 40, 3), np.uint8)
    image[..., 2] = 255  # red in BGR
    depth = estimator.predict(image)["depth"]
    assert depth.shape == (30, 40) and depth.dtype == np.float32
    assert np.allclose(depth, 2.0)
    image[..., 2], image[..., 0] = 0, 255  # blue: no red
    assert np.allclose(estimator.estimate_depth(image), 0.0)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32),
                                 np.zeros((0, 4, 3), np.uint8), "image.png"])
def test_estimator_refuses_bad_images(bad):
    estimator = MonocularEstimator("demo", _Brightness(), backend="torch")
    with pytest.raises(ValueError, match="image"):
        estimator.predict(bad)


def test_estimator_refuses_a_postprocess_without_depth():
    estimator = MonocularEstimator("demo", _Brightness(), backend="torch",
                                   postprocess=lambda outputs, size: {"disparity": outputs[0][0, 0]})
    with pytest.raises(ValueError, match="no 'depth'"):
        estimator.predict(np.zeros((8, 8, 3), np.uint8))


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_packaged_light_unet_on_a_real_image(motorcycle, backend):
    left = motorcycle[0]
    estimator = create_estimator("unet", backend=backend)
    assert estimator.spec.family == "monocular-depth" and not estimator.metric
    estimator.prepare(*left.shape[:2])
    depth = estimator.predict(left)["depth"]
    assert depth.shape == left.shape[:2] and depth.dtype == np.float32
    assert np.isfinite(depth).all() and depth.min() > 0 and depth.max() <= 1.0
    assert depth.std() > 1e-3  # not a constant map


def test_backends_of_the_packaged_unet_agree(motorcycle_small):
    left = motorcycle_small[0]
    torch_depth = create_estimator("unet", backend="torch").estimate_depth(left)
    onnx_depth = create_estimator("unet", backend="onnx").estimate_depth(left)
    assert np.max(np.abs(torch_depth - onnx_depth)) < 1e-3


def test_original_unet_is_registered_untrained_for_the_comparison():
    spec = model_spec("unet-original")
    assert spec.default_weights is None and spec.input_kind == "image" and spec.output_kinds == ("depth",)
    estimator = create_estimator("unet-original", backend="torch")
    assert parameter_count(estimator.model) == parameter_count(OriginalUNet())
    with pytest.raises(ValueError, match="no option 'max_disparity'"):
        create_estimator("unet", max_disparity=3)
