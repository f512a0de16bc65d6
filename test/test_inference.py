"""NetworkRunner: torch and onnxruntime backends, the on-disk ONNX cache (hit, corrupt file, unwritable folder),
check_backends_agree, and the coarse-to-fine estimator's prepare()."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from stereo_depth_ros.models import inference
from stereo_depth_ros.models.coarse_to_fine import CoarseToFineStereoNet
from stereo_depth_ros.models.estimator import CoarseToFineEstimator, _Stages
from stereo_depth_ros.models.inference import NetworkRunner, cache_key, check_backends_agree, default_cache_dir

NAMES = (["left", "right"], ["stage_0", "stage_1"])


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return _Stages(CoarseToFineStereoNet(max_disparity=32).eval(), 1)


@pytest.fixture
def pair():
    torch.manual_seed(1)
    return torch.rand(1, 3, 32, 48), torch.rand(1, 3, 32, 48)


def _fail_export(*args, **kwargs):
    raise AssertionError("export_onnx was called although the graph is in the cache")


def test_onnx_and_torch_runners_agree_and_auto_is_onnx_on_the_cpu(network, pair, tmp_path):
    onnx_runner = NetworkRunner(network, *NAMES, backend="auto", device="cpu", cache_dir=tmp_path)
    torch_runner = NetworkRunner(network, *NAMES, backend="torch", device="cpu", cache_dir=tmp_path)
    assert onnx_runner.backend == "onnx" and torch_runner.backend == "torch"
    a, b = onnx_runner.run(*pair), torch_runner.run(*pair)
    assert [x.shape for x in a] == [x.shape for x in b] == [(1, 1, 32, 48)] * 2
    assert all(x.dtype == np.float32 for x in a + b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=1e-3)
    agreement = check_backends_agree(network, pair, *NAMES)
    assert agreement.agree and agreement.max_abs_difference <= 1e-3 and len(agreement.per_output) == 2


class ExportsDifferently(torch.nn.Module):
    """Adds 0.5 only while being exported (traced), so its ONNX graph disagrees with PyTorch by 0.5."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.5 if torch.jit.is_tracing() else x


def test_check_backends_agree_reports_a_disagreement():
    agreement = check_backends_agree(ExportsDifferently(), [torch.zeros(1, 4)], ["x"], ["y"], tolerance=1e-3)
    assert agreement.max_abs_difference == pytest.approx(0.5) and not agreement.agree


def test_second_runner_loads_the_graph_from_the_cache_without_exporting(network, pair, tmp_path, monkeypatch):
    first = NetworkRunner(network, *NAMES, backend="onnx", cache_dir=tmp_path, weights_sha256="ab" * 32)
    expected = first.run(*pair)
    assert first.exports == 1
    files = list(tmp_path.glob("*.onnx"))
    assert files == [first.cache_path([tuple(pair[0].shape)] * 2)]
    monkeypatch.setattr(inference, "export_onnx", _fail_export)
    second = NetworkRunner(network, *NAMES, backend="onnx", cache_dir=tmp_path, weights_sha256="ab" * 32)
    for x, y in zip(second.run(*pair), expected):
        np.testing.assert_array_equal(x, y)
    assert second.exports == 0
    # Other weights, configuration or size: another cache entry, so it must export (and here fails to).
    for changed in ({"weights_sha256": "cd" * 32}, {"config": {"max_disparity": 64}}):
        options = {"weights_sha256": "ab" * 32, **changed}
        with pytest.raises(AssertionError, match="export_onnx was called"):
            NetworkRunner(network, *NAMES, backend="onnx", cache_dir=tmp_path, **options).run(*pair)
    with pytest.raises(AssertionError, match="export_onnx was called"):
        second.run(torch.rand(1, 3, 32, 64), torch.rand(1, 3, 32, 64))


def test_a_corrupt_cache_file_is_exported_again(network, pair, tmp_path, caplog):
    runner = NetworkRunner(network, *NAMES, backend="onnx", cache_dir=tmp_path)
    expected = runner.run(*pair)
    path = runner.cache_path([tuple(pair[0].shape)] * 2)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 3])  # e.g. a disk filled up by another writer
    again = NetworkRunner(network, *NAMES, backend="onnx", cache_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="stereo_depth_ros.models.inference"):
        outputs = again.run(*pair)
    assert again.exports == 1 and "cannot be loaded" in caplog.text
    for x, y in zip(outputs, expected):
        np.testing.assert_array_equal(x, y)
    assert path.read_bytes() == good  # replaced by a complete graph
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]  # no temporary file left behind


def test_an_unwritable_cache_folder_costs_only_the_cache(network, pair, tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    runner = NetworkRunner(network, *NAMES, backend="onnx", cache_dir=blocker / "onnx")
    with caplog.at_level(logging.WARNING, logger="stereo_depth_ros.models.inference"):
        outputs = runner.run(*pair)
    assert len(outputs) == 2 and "cannot write the ONNX cache file" in caplog.text


def test_cache_folder_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("STEREO_DEPTH_ROS_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("STEREO_DEPTH_ROS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "stereo_depth_ros" / "onnx"
    key = cache_key("ab" * 32, {"a": 1}, ["x"], [(1, 2)], ["y"])
    assert key == cache_key("ab" * 32, {"a": 1}, ["x"], [(1, 2)], ["y"]) != cache_key("ab" * 32, {"a": 2}, ["x"],
                                                                                       [(1, 2)], ["y"])


def test_runner_rejects_bad_options(network):
    with pytest.raises(ValueError, match="backend"):
        NetworkRunner(network, *NAMES, backend="tensorrt")
    with pytest.raises(ValueError, match="device"):
        NetworkRunner(network, *NAMES, device="tpu")
    with pytest.raises(ValueError, match="input name"):
        NetworkRunner(network, [], ["y"])
    runner = NetworkRunner(network, *NAMES, backend="torch")
    with pytest.raises(ValueError, match="1 inputs given"):
        runner.run(torch.zeros(1, 3, 16, 16))
    with pytest.warns(UserWarning, match="half precision needs CUDA"):
        assert not NetworkRunner(network, *NAMES, backend="torch", device="cpu", half=True).half


def test_estimator_prepare_builds_the_graph_so_the_first_frame_does_not_export(motorcycle_small, tmp_path,
                                                                             monkeypatch):
    left, right, _ = motorcycle_small
    estimator = CoarseToFineEstimator(backend="onnx", device="cpu", cache_dir=tmp_path)
    estimator.prepare(*left.shape[:2])
    assert len(list(tmp_path.glob("*.onnx"))) == 1  # the graph of the working size (auto scale 2x) and 4 stages
    monkeypatch.setattr(inference, "export_onnx", _fail_export)
    prepared = estimator.estimate(left, right)
    # A new estimator (a restarted node) finds the graph in the cache too.
    restarted = CoarseToFineEstimator(backend="onnx", device="cpu", cache_dir=tmp_path).estimate(left, right)
    reference = CoarseToFineEstimator(backend="torch", device="cpu").estimate(left, right)
    for a, b, c in zip(prepared, restarted, reference):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, atol=1e-3)
    with pytest.raises(ValueError, match="height"):
        estimator.prepare(0, 10)
