"""The single-stage refinement CNNs C, SC, SCRX, SCRXU and SCRDU of paper 002."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stereo_depth_ros.models.inference import check_backends_agree
from stereo_depth_ros.models.refinement_cnn import (ARCHITECTURE, VARIANTS, RefinementCNN, ResidualBlock,
                                                    build_refinement_cnn)
from stereo_depth_ros.models.registry import create_estimator, model_spec
from stereo_depth_ros.models.weights import WeightsError, load_weights, save_weights


@pytest.mark.parametrize("variant", VARIANTS)
def test_output_is_a_unit_range_map_of_the_input_size(variant):
    torch.manual_seed(0)
    out = RefinementCNN(variant).eval()(torch.rand(2, 3, 36, 52)).detach()
    assert out.shape == (2, 1, 36, 52)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_variants_are_different_networks():
    counts = {variant: sum(p.numel() for p in RefinementCNN(variant).parameters()) for variant in VARIANTS}
    assert len(set(counts.values())) == len(VARIANTS), counts
    assert counts["c"] < counts["sc"] < counts["scrx"]  # residual blocks add parameters; so does the branch
    assert not any(isinstance(m, ResidualBlock) for m in RefinementCNN("c").modules())
    assert sum(isinstance(m, ResidualBlock) for m in RefinementCNN("sc").modules()) == 4
    assert sum(isinstance(m, ResidualBlock) for m in RefinementCNN("scrxu").modules()) == 6  # + 2 up-sampling


@pytest.mark.parametrize("variant", ["scrx", "scrxu", "scrdu"])
def test_refinement_branch_reads_the_image(variant):
    torch.manual_seed(0)
    net = RefinementCNN(variant)
    net(torch.rand(1, 3, 32, 32)).sum().backward()
    gradient = sum(float(p.grad.abs().sum()) for p in net.refine_image.parameters())
    assert gradient > 0


def test_max_pooling_only_in_the_first_two_layers():
    net = RefinementCNN("sc")
    pools = [i for i, m in enumerate(net.region_a) if isinstance(m, torch.nn.MaxPool2d)]
    assert pools == [1, 3]  # after residual blocks 1 and 2


@pytest.mark.parametrize("variant", VARIANTS)
def test_onnx_export_agrees_with_pytorch(variant):
    torch.manual_seed(3)
    agreement = check_backends_agree(RefinementCNN(variant), [torch.rand(1, 3, 40, 48)], ["image"], ["output"], 1e-4)
    assert agreement.agree, agreement


def test_bad_options_and_inputs_are_refused():
    with pytest.raises(ValueError, match="variant"):
        RefinementCNN("scrz")
    with pytest.raises(ValueError, match="width"):
        RefinementCNN("c", width=0)
    with pytest.raises(ValueError, match="multiples of 4"):
        RefinementCNN("c")(torch.rand(1, 3, 30, 32))


def test_weights_round_trip(tmp_path):
    torch.manual_seed(4)
    net = RefinementCNN("scrdu", width=8).eval()
    path = tmp_path / "scrdu.safetensors"
    save_weights(net, path, ARCHITECTURE, net.config)
    loaded, _ = load_weights(path, ARCHITECTURE, build_refinement_cnn)
    image = torch.rand(1, 3, 16, 16)
    assert torch.equal(loaded(image), net(image))
    estimator = create_estimator("scrdu", weights=path, backend="torch")
    depth = estimator.estimate_depth(np.full((30, 41, 3), 100, np.uint8))
    assert depth.shape == (30, 41) and np.isfinite(depth).all()


def test_registered_refinement_cnns():
    packaged = [v for v in VARIANTS if model_spec(v).default_weights.is_file()]
    assert packaged, "the best refinement CNN's weights must be packaged"
    for variant in VARIANTS:
        spec = model_spec(variant)
        assert spec.family == "monocular-depth" and spec.input_kind == "image" and spec.output_kinds == ("depth",)
        if variant not in packaged:
            with pytest.raises(WeightsError, match="train-mono"):
                create_estimator(variant)


def test_packaged_refinement_cnn_on_a_real_image(motorcycle):
    variant = next(v for v in VARIANTS if model_spec(v).default_weights.is_file())
    left = motorcycle[0]
    depth = create_estimator(variant).predict(left)["depth"]
    assert depth.shape == left.shape[:2] and np.isfinite(depth).all() and depth.min() > 0
