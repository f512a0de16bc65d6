"""``eval-mono`` / ``eval-mono-dataset`` (commands/mono.py, evaluation/mono_evaluate.py) on scikit-image's real
Middlebury 2014 Motorcycle pair with its GT, with stand-in monocular models registered in this test only."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from stereo_depth_ros import cli
from stereo_depth_ros.evaluation.datasets import SKIMAGE_MOTORCYCLE_CAMERA, load_skimage_motorcycle
from stereo_depth_ros.evaluation.mono_evaluate import JSON_ROW_KEYS, evaluate_frame, mean_rows
from stereo_depth_ros.models.base import Estimator
from stereo_depth_ros.models.registry import ModelSpec, _REGISTRY, register_model

SCALE = 0.5  # half-size Motorcycle keeps the stereo baseline fast


class OracleDepth(Estimator):
    """A stand-in model that returns a fixed depth map times ``factor`` (the GT: a perfect model)."""

    backend = "numpy"

    def __init__(self, name: str, depth: np.ndarray, factor: float, metric: bool) -> None:
        self.name, self.depth, self.factor, self.metric = name, depth, factor, metric

    def predict(self, image_bgr):
        return {"depth": np.nan_to_num(self.depth * np.float32(self.factor), nan=1.0).astype(np.float32)}


@pytest.fixture(scope="module")
def motorcycle(tmp_path_factory):
    folder = tmp_path_factory.mktemp("motorcycle")
    left, right, disparity = load_skimage_motorcycle(SCALE)
    camera = SKIMAGE_MOTORCYCLE_CAMERA.scaled(SCALE)
    depth = np.asarray(camera.depth_from_disparity(disparity), dtype=np.float32)
    cv2.imwrite(str(folder / "left.png"), left)
    cv2.imwrite(str(folder / "right.png"), right)
    np.save(folder / "gt.npy", depth)
    np.save(folder / "gt_mm.npy", depth * 1000.0)
    return {"folder": folder, "left": left, "right": right, "depth": depth, "camera": camera}


@pytest.fixture(scope="module")
def stand_ins(motorcycle):
    """Register a metric oracle and a scale-free oracle (GT * 7) for this module, removed afterwards."""
    specs = {"test-oracle-metric": (1.0, True), "test-oracle-relative": (7.0, False)}
    for name, (factor, metric) in specs.items():
        register_model(ModelSpec(name=name, family="monocular-depth", input_kind="image", output_kinds=("depth",),
                                 build=lambda n=name, f=factor, m=metric, **_: OracleDepth(n, motorcycle["depth"],
                                                                                          f, m),
                                 options=("backend",)))
    yield list(specs)
    for name in specs:
        _REGISTRY.pop(name, None)


def run_json(capsys, argv):
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    return json.loads(out)  # exactly one document: json.loads fails on anything else


def eval_mono_argv(motorcycle, gt="gt.npy", extra=()):
    folder = motorcycle["folder"]
    camera = motorcycle["camera"]
    return ["eval-mono", "--image", str(folder / "left.png"), "--gt-depth", str(folder / gt),
            "--right", str(folder / "right.png"), "--focal-px", str(camera.fx), "--baseline-m",
            str(camera.baseline_m), "--principal-point-offset-px", str(camera.principal_point_offset),
            "--max-depth", "10", "--json", *extra]


def test_eval_mono_json_has_exactly_the_fields(motorcycle, stand_ins, capsys):
    model_args = [arg for name in stand_ins for arg in ("--model", name)]
    document = run_json(capsys, eval_mono_argv(motorcycle, extra=model_args))
    assert list(document) == ["rows"]
    rows = {row["model"]: row for row in document["rows"]}
    assert list(rows) == stand_ins + ["gt-mean", "stereo"]
    for row in document["rows"]:
        assert tuple(row) == JSON_ROW_KEYS
        assert isinstance(row["median_scaling"], bool) and isinstance(row["model"], str)
        assert all(isinstance(row[key], float) for key in JSON_ROW_KEYS[2:])
    # the perfect metric model: no error, unit right, not median-scaled
    assert rows["test-oracle-metric"]["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert rows["test-oracle-metric"]["scale"] == pytest.approx(1.0)
    assert rows["test-oracle-metric"]["median_scaling"] is False
    # the scale-free model is median-scaled: its scale 1/7 is reported and removed
    assert rows["test-oracle-relative"]["median_scaling"] is True
    assert rows["test-oracle-relative"]["scale"] == pytest.approx(1 / 7, rel=1e-4)
    assert rows["test-oracle-relative"]["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    # stereo: metric, better than the constant baseline on AbsRel and RMSE, dense on Motorcycle
    assert rows["stereo"]["abs_rel"] < rows["gt-mean"]["abs_rel"]
    assert rows["stereo"]["rmse_m"] < rows["gt-mean"]["rmse_m"]
    assert 0.8 < rows["stereo"]["scale"] < 1.25


def test_gt_mean_baseline_is_the_mean_depth_everywhere(motorcycle, capsys):
    document = run_json(capsys, eval_mono_argv(motorcycle))
    row = next(r for r in document["rows"] if r["model"] == "gt-mean")
    gt = motorcycle["depth"]
    g = gt[np.isfinite(gt) & (gt > 0)].astype(np.float64)
    assert row["abs_rel"] == pytest.approx(np.mean(np.abs(g - g.mean()) / g), rel=1e-5)
    assert row["rmse_m"] == pytest.approx(np.sqrt(np.mean((g - g.mean()) ** 2)), rel=1e-5)
    assert row["median_scaling"] is False and row["density_pct"] == 100.0


def test_a_wrong_gt_unit_shows(motorcycle, capsys):
    """GT in millimetres read as metres: the metric stereo row's scale is 1000 and its AbsRel near 1; with
    --gt-depth-scale 0.001 it matches the metre GT's row."""
    metres = {r["model"]: r for r in run_json(capsys, eval_mono_argv(motorcycle))["rows"]}
    wrong = {r["model"]: r for r in run_json(capsys, eval_mono_argv(motorcycle, "gt_mm.npy",
                                                                    ["--max-depth", "1e4"]))["rows"]}
    right = {r["model"]: r for r in run_json(capsys, eval_mono_argv(motorcycle, "gt_mm.npy",
                                                                    ["--gt-depth-scale", "0.001"]))["rows"]}
    assert wrong["stereo"]["scale"] == pytest.approx(1000.0 * metres["stereo"]["scale"], rel=1e-3)
    assert wrong["stereo"]["abs_rel"] > 0.99 and metres["stereo"]["abs_rel"] < 0.2
    assert right["stereo"]["abs_rel"] == pytest.approx(metres["stereo"]["abs_rel"], rel=1e-4)


def test_median_scaling_flag_scales_metric_models_too(motorcycle, stand_ins, capsys):
    document = run_json(capsys, eval_mono_argv(motorcycle, extra=["--model", "test-oracle-metric",
                                                                  "--median-scaling"]))
    rows = {row["model"]: row for row in document["rows"]}
    assert rows["test-oracle-metric"]["median_scaling"] is True
    assert rows["stereo"]["median_scaling"] is True and rows["gt-mean"]["median_scaling"] is False


@pytest.mark.parametrize("extra, message", [
    (["--model", "coarse-to-fine"], "not a registered monocular depth model"),
    (["--max-depth", "0.0001"], "max_depth_m"),
    (["--weights", "unet"], "NAME=PATH"),
    (["--model", "unet", "--weights", "scrxu=x.safetensors"], "not among the evaluated models"),
    (["--model", "unet", "--weights", "unet=/nonexistent/unet.safetensors"], "does not exist"),
])
def test_eval_mono_bad_options_are_clear_errors(motorcycle, capsys, extra, message):
    assert cli.main(eval_mono_argv(motorcycle, extra=extra)) == 2
    assert message in capsys.readouterr().err


def test_eval_mono_weights_replace_the_packaged_ones(motorcycle, tmp_path, capsys):
    """--weights NAME=PATH evaluates a model with other weights (a training run's): another U-Net gives another row."""
    import shutil

    from stereo_depth_ros.models.registry import model_spec

    packaged = run_json(capsys, eval_mono_argv(motorcycle, extra=["--model", "unet"]))
    copy = tmp_path / "copy.safetensors"
    shutil.copy(model_spec("unet").default_weights, copy)
    same = run_json(capsys, eval_mono_argv(motorcycle, extra=["--weights", f"unet={copy}"]))
    assert [row for row in same["rows"] if row["model"] == "unet"][0]["abs_rel"] == pytest.approx(
        [row for row in packaged["rows"] if row["model"] == "unet"][0]["abs_rel"])
    from stereo_depth_ros.models.mono_unet import LIGHT_ARCHITECTURE, build_light_unet
    from stereo_depth_ros.models.weights import load_weights, save_weights

    trained, _ = load_weights(copy, LIGHT_ARCHITECTURE, build_light_unet)
    untrained = build_light_unet(trained.config)
    save_weights(untrained, tmp_path / "untrained.safetensors", LIGHT_ARCHITECTURE, untrained.config)
    other = run_json(capsys, eval_mono_argv(motorcycle,
                                            extra=["--weights", f"unet={tmp_path / 'untrained.safetensors'}"]))
    assert [row for row in other["rows"] if row["model"] == "unet"][0]["abs_rel"] != pytest.approx(
        [row for row in packaged["rows"] if row["model"] == "unet"][0]["abs_rel"], rel=1e-3)


def test_eval_mono_refuses_a_gt_of_another_size(motorcycle, tmp_path, capsys):
    np.save(tmp_path / "small.npy", np.ones((10, 10), np.float32))
    argv = eval_mono_argv(motorcycle)
    argv[argv.index("--gt-depth") + 1] = str(tmp_path / "small.npy")
    assert cli.main(argv) == 2
    assert "is 10 x 10" in capsys.readouterr().err


def test_eval_mono_dataset_on_a_folder_and_skimage(motorcycle, stand_ins, tmp_path, capsys):
    for sub in ("image", "depth"):
        (tmp_path / "set" / sub).mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "set" / "image" / "a.png"), motorcycle["left"])
    np.save(tmp_path / "set" / "depth" / "a.npy", motorcycle["depth"] * 1000.0)
    document = run_json(capsys, ["eval-mono-dataset", str(tmp_path / "set"), "--gt-depth-scale", "0.001",
                                 "--model", "test-oracle-relative", "--max-depth", "10", "--json",
                                 "--markdown-out", str(tmp_path / "tables.md")])
    (section,) = document["sets"]
    assert section["frames"] == 1 and section["max_depth_m"] == 10
    rows = {row["model"]: row for row in section["rows"]}
    assert set(rows) == {"test-oracle-relative", "gt-mean"}
    assert rows["test-oracle-relative"]["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert {"lrmse_si", "ard", "srd", "mse_normalised", "ssim_normalised"} <= set(rows["gt-mean"])
    assert "AbsRel" in (tmp_path / "tables.md").read_text()


def test_fusion_row_fills_the_stereo_gaps(motorcycle):
    """depth-filled on Motorcycle: stereo's invalid band and occlusions get the (perfect, relative) model's depth,
    so it is denser than stereo and never worse than stereo where stereo measured."""
    from stereo_depth_ros.commands.mono import build_stereo

    model = OracleDepth("oracle", motorcycle["depth"], 3.0, False)
    stereo = build_stereo(motorcycle["camera"])
    rows, depths = evaluate_frame(motorcycle["left"], motorcycle["depth"], [model], right_bgr=motorcycle["right"],
                                  stereo=stereo, max_depth_m=10.0, fusion=True)
    by_name = {row["model"]: row for row in mean_rows(rows)}
    assert by_name["depth-filled"]["density_pct"] >= by_name["stereo"]["density_pct"]
    assert by_name["depth-filled"]["abs_rel"] <= by_name["stereo"]["abs_rel"] + 1e-3
    stereo_valid = np.isfinite(depths["stereo"]) & (depths["stereo"] > 0)
    np.testing.assert_array_equal(depths["depth-filled"][stereo_valid], depths["stereo"][stereo_valid])


def test_confident_stereo_row_and_its_filling(motorcycle):
    """With a confidence threshold the stereo-confident row drops the low-confidence pixels (less dense, smaller
    error than dense stereo on what it keeps) and depth-filled fills exactly those pixels from the model."""
    from stereo_depth_ros.commands.mono import build_stereo

    model = OracleDepth("oracle", motorcycle["depth"], 3.0, False)
    stereo = build_stereo(motorcycle["camera"], confidence_threshold=0.3)
    rows, depths = evaluate_frame(motorcycle["left"], motorcycle["depth"], [model], right_bgr=motorcycle["right"],
                                  stereo=stereo, max_depth_m=10.0, fusion=True)
    by_name = {row["model"]: row for row in mean_rows(rows)}
    assert by_name["stereo-confident"]["density_pct"] < by_name["stereo"]["density_pct"]
    assert by_name["stereo-confident"]["abs_rel"] < by_name["stereo"]["abs_rel"]
    confident = np.isfinite(depths["stereo-confident"])
    np.testing.assert_array_equal(depths["depth-filled"][confident], depths["stereo-confident"][confident])
    dropped = ~confident & np.isfinite(depths["stereo"])
    assert dropped.any() and not np.array_equal(depths["depth-filled"][dropped], depths["stereo"][dropped])
    with pytest.raises(ValueError, match="confidence_threshold"):
        build_stereo(motorcycle["camera"], confidence_threshold=1.5)


def test_mono_depth_scorer_for_the_replay():
    from stereo_depth_ros.evaluation.scorers import create_scorer

    gt = np.random.default_rng(2).uniform(0.05, 0.2, (20, 30)).astype(np.float32)
    depth = gt.copy()
    depth[:, :5] = np.nan  # a node's invalid band
    scorer = create_scorer("mono-depth", max_depth_m=0.3)
    right = scorer.score({"depth": depth}, {"depth": gt}, None)
    assert right["abs_rel"] == pytest.approx(0.0, abs=1e-6) and right["density_pct"] == pytest.approx(25 / 30 * 100)
    millimetres = scorer.score({"depth": depth * 1000.0}, {"depth": gt}, None)  # a wrong unit must show
    assert millimetres["abs_rel"] > 0.3 and millimetres["scale"] == pytest.approx(1e-3, rel=1e-4)
    assert set(scorer.summarise([right, millimetres])) == set(scorer.metric_labels)
    with pytest.raises(ValueError, match="output 'depth'"):
        scorer.score({}, {"depth": gt}, None)


def test_fuse_depth_on_a_synthetic_scene_with_a_known_answer():
    """A slanted plane 0.05-0.15 m; stereo lacks a 12-column band (NaN), an occlusion (+inf) and a too-near block
    (-inf); the monocular depth is the plane / 4 with 1 % noise. The fused map is stereo where valid and the plane
    (within the noise) elsewhere: better than stereo alone (density) and than the unaligned monocular depth."""
    from stereo_depth_ros.evaluation.depth_fusion import alignment_scale, fuse_depth
    from stereo_depth_ros.evaluation.depth_metrics import depth_metrics

    truth = np.tile(np.linspace(0.05, 0.15, 64, dtype=np.float32), (48, 1))
    stereo = truth.copy()
    stereo[:, :12] = np.nan
    stereo[20:30, 30:40] = np.inf
    stereo[0:5, 50:60] = -np.inf
    mono = truth / 4 * (1 + 0.01 * np.random.default_rng(3).standard_normal(truth.shape)).astype(np.float32)
    fused, scale = fuse_depth(stereo, mono)
    assert scale == pytest.approx(4.0, rel=0.01)
    valid = np.isfinite(stereo)
    np.testing.assert_array_equal(fused[valid], stereo[valid])
    np.testing.assert_allclose(fused[~valid], truth[~valid], rtol=0.05)
    fused_row = depth_metrics(fused, truth, max_depth_m=0.2)
    assert fused_row["density_pct"] == 100.0 > depth_metrics(stereo, truth, max_depth_m=0.2)["density_pct"]
    assert fused_row["abs_rel"] < 0.01 < depth_metrics(mono, truth, max_depth_m=0.2)["abs_rel"]
    # too few common pixels: no scale, the stereo depth alone (invalid pixels NaN)
    sparse = np.full_like(stereo, np.nan)
    sparse[0, :3] = 0.1
    assert np.isnan(alignment_scale(mono, sparse))
    alone, failed = fuse_depth(sparse, mono, min_pixels=16)
    assert np.isnan(failed) and np.count_nonzero(np.isfinite(alone)) == 3
    with pytest.raises(ValueError, match="differs"):
        fuse_depth(stereo, mono[:, :10])
