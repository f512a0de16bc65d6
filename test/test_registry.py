"""The model registry and the estimator interface: names, options, valid windows, disparity ranges, stages."""

from __future__ import annotations

import numpy as np
import pytest

from stereo_depth_ros.models import coarse_to_fine, registry
from stereo_depth_ros.models.base import StereoEstimator
from stereo_depth_ros.models.estimator import CoarseToFineEstimator
from stereo_depth_ros.models.registry import ModelSpec, create_estimator, model_names, model_spec, register_model
from stereo_depth_ros.models.sgbm import SGBMEstimator


def test_both_stereo_methods_are_registered_with_their_kinds():
    stereo = [name for name in model_names("stereo-pair") if model_spec(name).family == "stereo"]
    assert stereo == ["coarse-to-fine", "sgbm"]  # stereo super-resolution (issue 12) also takes a stereo pair
    assert model_names()[:2] == ["coarse-to-fine", "sgbm"]  # other families (issue 11 onwards) come after
    network, sgbm = model_spec("coarse-to-fine"), model_spec("sgbm")
    assert network.output_kinds == sgbm.output_kinds == ("disparity-stages",)
    assert network.architecture == coarse_to_fine.ARCHITECTURE and network.default_weights.is_file()
    assert sgbm.architecture is None and sgbm.default_weights is None


def test_create_estimator_builds_each_method_with_its_options():
    network = create_estimator("coarse-to-fine", backend="torch", device="cpu", max_disparity=128, input_scale=1.0,
                               max_stage=2)
    assert isinstance(network, CoarseToFineEstimator) and isinstance(network, StereoEstimator)
    assert (network.name, network.backend, network.max_disparity, network.num_stages) == \
        ("coarse-to-fine", "torch", 128, 3)
    assert network.input_scale == 1.0 and network.spec is model_spec("coarse-to-fine")
    sgbm = create_estimator("sgbm", max_disparity=64, block_size=3)
    assert isinstance(sgbm, SGBMEstimator) and sgbm.num_disparities == 64 and sgbm.block_size == 3
    assert (sgbm.name, sgbm.backend, sgbm.num_stages, sgbm.max_disparity) == ("sgbm", "opencv", 1, 64)
    assert create_estimator("sgbm").num_disparities == 192 == create_estimator("sgbm", max_disparity=None).max_disparity


def test_unknown_names_and_options_are_value_errors_naming_them():
    with pytest.raises(ValueError, match="unknown model 'sgm'; registered models: coarse-to-fine, sgbm"):
        create_estimator("sgm")
    with pytest.raises(ValueError, match="model 'sgbm' has no option 'weights'"):
        create_estimator("sgbm", weights="w.safetensors")
    with pytest.raises(ValueError, match="no options 'colour', 'size'"):
        create_estimator("coarse-to-fine", colour=1, size=2)
    with pytest.raises(ValueError, match="multiple of 16"):
        create_estimator("sgbm", max_disparity=100)
    with pytest.raises(ValueError, match="backend"):
        create_estimator("coarse-to-fine", backend="tensorrt")
    with pytest.raises(ValueError, match="input_kind"):
        model_names("video")


def test_register_model_refuses_duplicates_and_bad_specs(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # leave the real registry untouched
    spec = ModelSpec("toy", "stereo", "stereo-pair", ("disparity-stages",), build=lambda: None)
    register_model(spec)
    assert model_names()[-1] == "toy"
    with pytest.raises(ValueError, match="already registered"):
        register_model(spec)
    with pytest.raises(ValueError, match="input_kind"):
        ModelSpec("bad", "stereo", "point-cloud", ("depth",), build=lambda: None)
    with pytest.raises(ValueError, match="output_kinds"):
        ModelSpec("bad", "stereo", "image", ("colour",), build=lambda: None)


def test_sgbm_valid_window_follows_stereo_image_proc():
    # stereo_image_proc: border = block_size // 2; left edge = num_disparities + min_disparity + border - 1;
    # right edge = width - 1 - (border + min_disparity); window height = height - 1 - 2 border.
    sgbm = SGBMEstimator(num_disparities=64, block_size=5)
    assert sgbm.valid_window(640, 480) == (65, 2, 640 - 1 - 2 - 65, 480 - 1 - 4)
    shifted = SGBMEstimator(num_disparities=32, min_disparity=8, block_size=3)
    assert shifted.valid_window(200, 100) == (32 + 8 + 1 - 1, 1, (200 - 1 - 9) - 40, 97)
    assert shifted.disparity_range() == (8.0, 39.0)
    assert sgbm.valid_window(640, 480, min_disparity=100.0)[0] == 100  # a larger minimum moves the left edge
    assert sgbm.valid_window(50, 20) == (50, 2, 0, 15)  # narrower than the search range: nothing valid


def test_network_valid_window_excludes_the_band_without_a_possible_match():
    network = create_estimator("coarse-to-fine", backend="torch")
    assert network.valid_window(640, 480) == (0, 0, 640, 480)
    assert network.valid_window(640, 480, min_disparity=2.5) == (3, 0, 637, 480)
    assert network.valid_window(10, 4, min_disparity=50.0) == (10, 0, 0, 4)
    assert network.disparity_range() == (0.0, float(network.max_disparity))
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="min_disparity"):
            network.valid_window(640, 480, min_disparity=bad)
    with pytest.raises(ValueError, match="width"):
        network.valid_window(0, 480)


def test_every_stereo_estimate_takes_max_stage(motorcycle_small):
    left, right, _ = motorcycle_small
    sgbm = create_estimator("sgbm", max_disparity=32)
    only = sgbm.estimate(left, right, max_stage=0)
    assert len(only) == 1
    np.testing.assert_array_equal(only[0], sgbm.estimate(left, right)[0], strict=True)
    with pytest.raises(ValueError, match="max_stage must be in 0..0 for sgbm"):
        sgbm.estimate(left, right, max_stage=1)
    network = create_estimator("coarse-to-fine", backend="torch", max_stage=1)
    assert len(network.estimate(left, right)) == 2 and len(network.estimate(left, right, max_stage=3)) == 4
    with pytest.raises(ValueError, match="max_stage"):
        network.estimate(left, right, max_stage=4)
    prediction = sgbm.predict(left, right)
    assert list(prediction) == ["disparity-stages"] and len(prediction["disparity-stages"]) == 1


def test_prepare_is_a_no_op_for_sgbm_and_checks_the_size():
    sgbm = create_estimator("sgbm")
    sgbm.prepare(480, 640)
    with pytest.raises(ValueError, match="height"):
        sgbm.prepare(0, 640)


def test_a_plain_install_runs_the_network_on_onnxruntime():
    """What `pip install .` and colcon install (setup.py's install_requires, package.xml's exec_depends) includes
    onnxruntime, and the registry's default network then runs on it on the CPU (issue 10: a plain install used to
    run eager PyTorch, 3-4x slower)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    setup_call = next(node for node in ast.walk(ast.parse((root / "setup.py").read_text()))
                      if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup")
    install_requires = next(ast.literal_eval(keyword.value) for keyword in setup_call.keywords
                            if keyword.arg == "install_requires")
    assert {"onnxruntime", "onnx", "safetensors", "torch"} <= set(install_requires)
    assert "<exec_depend>python3-onnxruntime-pip</exec_depend>" in (root / "package.xml").read_text()
    assert create_estimator("coarse-to-fine", device="cpu").backend == "onnx"
