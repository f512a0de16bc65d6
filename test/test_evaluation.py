"""Evaluation driver, data-set loaders, figures, benchmark and the eval command lines."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from stereo_depth_ros import cli
from stereo_depth_ros.evaluation import datasets
from stereo_depth_ros.evaluation.evaluate import evaluate_dataset, evaluate_pair, markdown_table, mean_rows

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ROW_FIELDS = {"method", "stage", "epe_px", "bad2_pct", "d1_pct", "density_pct", "mae_mm", "rmse_mm", "runtime_ms"}
FAST_NETWORK = ["--backend", "torch", "--max-disparity", "64", "--sgbm-disparities", "64", "--no-warmup"]


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """Run ``stereo-depth-ros`` with only this package's evaluation commands registered (independent of the
    other command groups); returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("stereo_depth_ros.commands.evaluation",))

    def run(*argv: str):
        code = cli.main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err
    return run


@pytest.fixture(scope="module")
def small_motorcycle(tmp_path_factory):
    """scikit-image's Motorcycle pair at 0.3 scale (150x222) on disk: left, right, GT .npy."""
    left, right, gt = datasets.load_skimage_motorcycle()
    sample = datasets.resize_sample(datasets.StereoSample("m", left, right, gt), 150, 222)
    folder = tmp_path_factory.mktemp("motorcycle")
    cv2.imwrite(str(folder / "left.png"), sample.left_bgr)
    cv2.imwrite(str(folder / "right.png"), sample.right_bgr)
    np.save(folder / "gt.npy", sample.gt_disparity)
    return folder


class ShiftedGroundTruth:
    """A fake multi-stage method: stage s answers GT + offsets[s] (and takes max_stage like the network)."""

    name = "fake"

    def __init__(self, gt: np.ndarray, offsets=(2.0, 1.0, 0.5)) -> None:
        self.gt, self.offsets, self.calls = gt, offsets, []

    @property
    def num_stages(self) -> int:
        return len(self.offsets)

    def estimate(self, left, right, max_stage=None):
        stage = len(self.offsets) - 1 if max_stage is None else max_stage
        self.calls.append(stage)
        return [self.gt + offset for offset in self.offsets[:stage + 1]]


class Constant:
    name, num_stages = "constant", 1

    def estimate(self, left, right):
        return [np.full(left.shape[:2], 5.0, np.float32)]


def _pair(h=12, w=16):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    gt = np.full((h, w), 4.0, np.float32)
    gt[0, 0] = np.nan
    return image, image.copy(), gt


def test_evaluate_pair_gives_one_row_per_stage_timed_per_stage():
    left, right, gt = _pair()
    fake = ShiftedGroundTruth(gt)
    rows = evaluate_pair(left, right, gt, [fake, Constant()], focal_px=100.0, baseline_m=0.01)
    assert [(r["method"], r["stage"]) for r in rows] == [("fake", 0), ("fake", 1), ("fake", 2), ("constant", None)]
    assert all(set(r) == ROW_FIELDS for r in rows)
    assert [r["epe_px"] for r in rows] == pytest.approx([2.0, 1.0, 0.5, 1.0])
    assert [r["bad2_pct"] for r in rows] == [0.0, 0.0, 0.0, 0.0]
    assert rows[3]["mae_mm"] == pytest.approx(1000 * (100 * 0.01 / 4 - 100 * 0.01 / 5))
    assert all(r["runtime_ms"] >= 0 for r in rows)
    assert fake.calls == [0, 0, 1, 1, 2, 2]  # each stage warmed up, then timed on its own


def test_evaluate_pair_rejects_ground_truth_of_another_size():
    left, right, gt = _pair()
    with pytest.raises(ValueError, match="ground-truth disparity is 12x15"):
        evaluate_pair(left, right, gt[:, :15], [Constant()])


def test_evaluate_pair_rejects_an_sgbm_range_wider_than_the_image():
    from stereo_depth_ros.models.sgbm import SGBMEstimator

    left, right, gt = _pair()
    with pytest.raises(ValueError, match="16 px wide"):
        evaluate_pair(left, right, gt, [SGBMEstimator(num_disparities=64)])


def test_mean_rows_average_finite_values_and_keep_none():
    rows = [{"method": "a", "stage": 0, "epe_px": 1.0, "mae_mm": None},
            {"method": "a", "stage": 0, "epe_px": 3.0, "mae_mm": None},
            {"method": "a", "stage": 0, "epe_px": math.nan, "mae_mm": None},
            {"method": "b", "stage": None, "epe_px": 5.0, "mae_mm": 2.0}]
    means = mean_rows(rows, ("epe_px", "mae_mm"))
    assert means == [{"method": "a", "stage": 0, "epe_px": 2.0, "mae_mm": None, "pairs": 3},
                     {"method": "b", "stage": None, "epe_px": 5.0, "mae_mm": 2.0, "pairs": 1}]


def test_markdown_table_has_a_header_and_one_line_per_row():
    rows = [{"method": "a", "stage": 0, "epe_px": 1.234}, {"method": "b", "stage": None, "epe_px": 3.0}]
    table = markdown_table(rows, ("method", "stage", "epe_px"), mean_row=True).splitlines()
    assert table[0] == "| method | stage | EPE px |"
    assert table[2] == "| a | 0 | 1.23 |" and table[3] == "| b | - | 3.00 |"
    assert table[4] == "| **mean** |  | 2.12 |"


def test_evaluate_dataset_averages_over_pairs():
    left, right, gt = _pair()
    samples = [datasets.StereoSample(f"p{i}", left, right, gt + i) for i in range(3)]
    per_pair, means = evaluate_dataset(samples, [Constant()], progress=False)
    assert [r["pair"] for r in per_pair] == ["p0", "p1", "p2"]
    # constant 5 px against GT 4, 5, 6: errors 1, 0, 1.
    assert means[0]["epe_px"] == pytest.approx(2 / 3) and means[0]["pairs"] == 3


def test_eval_pair_json_has_four_network_rows_and_one_sgbm_row(run_cli, small_motorcycle, tmp_path):
    figure = tmp_path / "figure.png"
    code, out, err = run_cli("eval-pair", "--left", str(small_motorcycle / "left.png"),
                             "--right", str(small_motorcycle / "right.png"),
                             "--gt-disparity", str(small_motorcycle / "gt.npy"), "--json",
                             "--focal-px", "300", "--baseline-m", "0.05", "--figure", str(figure), *FAST_NETWORK)
    assert code == 0, err
    document = json.loads(out)  # exactly one JSON document on stdout
    assert list(document) == ["rows"]
    rows = document["rows"]
    assert all(set(row) == ROW_FIELDS for row in rows)
    assert [(r["method"], r["stage"]) for r in rows] == [("coarse-to-fine", s) for s in range(4)] + [("sgbm", None)]
    for row in rows:
        for key in ROW_FIELDS - {"method", "stage"}:
            assert isinstance(row[key], float), (key, row)
    assert all(r["density_pct"] == 100.0 for r in rows[:4])  # the network answers everywhere
    assert 0 < rows[4]["density_pct"] < 100  # SGBM leaves holes
    image = cv2.imread(str(figure))
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 20_000
    assert image.shape[1] > 3 * image.shape[0]  # one row of seven panels


def test_eval_pair_single_method_and_markdown(run_cli, small_motorcycle):
    code, out, err = run_cli("eval-pair", "--left", str(small_motorcycle / "left.png"),
                             "--right", str(small_motorcycle / "right.png"),
                             "--gt-disparity", str(small_motorcycle / "gt.npy"), "--method", "sgbm", *FAST_NETWORK)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith("| method | stage | EPE px") and len(lines) == 3 and lines[2].startswith("| sgbm | - |")


def test_eval_pair_reports_a_ground_truth_of_another_size(run_cli, small_motorcycle, tmp_path):
    np.save(tmp_path / "small.npy", np.ones((10, 10), np.float32))
    code, out, err = run_cli("eval-pair", "--left", str(small_motorcycle / "left.png"),
                             "--right", str(small_motorcycle / "right.png"),
                             "--gt-disparity", str(tmp_path / "small.npy"), "--method", "sgbm", *FAST_NETWORK)
    assert code == 2 and out == ""
    assert "ground-truth disparity is 10x10" in err


def test_eval_dataset_on_a_user_folder(run_cli, tmp_path):
    left, right, gt = datasets.load_skimage_motorcycle()
    sample = datasets.resize_sample(datasets.StereoSample("m", left, right, gt), 96, 144)
    for sub in ("left", "right", "disparity"):
        (tmp_path / "mine" / sub).mkdir(parents=True)
    for name in ("a", "b"):
        cv2.imwrite(str(tmp_path / "mine" / "left" / f"{name}.png"), sample.left_bgr)
        cv2.imwrite(str(tmp_path / "mine" / "right" / f"{name}.png"), sample.right_bgr)
        np.save(tmp_path / "mine" / "disparity" / f"{name}.npy", sample.gt_disparity)
    markdown = tmp_path / "tables.md"
    code, out, err = run_cli("eval-dataset", str(tmp_path / "mine"), "--json", "--markdown-out", str(markdown),
                             *FAST_NETWORK)
    assert code == 0, err
    document = json.loads(out)
    result = document["sets"]["mine"]
    assert result["pairs"] == 2 and len(result["per_pair"]) == 10
    assert [(r["method"], r["stage"]) for r in result["rows"]] == \
        [("coarse-to-fine", s) for s in range(4)] + [("sgbm", None)]
    # both pairs are identical, so the means equal each pair's values
    first_pair = [r for r in result["per_pair"] if r["pair"] == "mine/a"]
    assert [r["epe_px"] for r in result["rows"]] == pytest.approx([r["epe_px"] for r in first_pair])
    assert "### mine (mean over 2 pairs)" in markdown.read_text()


def test_eval_dataset_registered_set_and_missing_folder(run_cli, tmp_path):
    code, out, err = run_cli("eval-dataset", "bdis-synthetic", "--data-root", str(tmp_path), "--method", "sgbm")
    assert code == 2 and str(tmp_path / "endoscopic_stereo" / "bdis_synthetic") in err
    code, out, err = run_cli("eval-dataset", "no-such-set", "--method", "sgbm")
    assert code == 2 and "no-such-set" in err
    cones = DATA / "general_stereo" / "middlebury2003" / "cones"
    if not cones.is_dir():
        pytest.skip(f"real data not present at {cones}")
    code, out, err = run_cli("eval-dataset", "middlebury2003-cones", "--method", "sgbm", "--sgbm-disparities", "64",
                             "--json")
    assert code == 0, err
    row = json.loads(out)["sets"]["middlebury2003-cones"]["rows"][0]
    # SGBM on cones with the published GT: sub-pixel to few-pixel errors on the pixels it answers
    assert row["stage"] is None and row["epe_px"] < 3 and row["mae_mm"] is None


def test_bdis_synthetic_loader_pairs_images_with_depth():
    if not (DATA / "endoscopic_stereo" / "bdis_synthetic").is_dir():
        pytest.skip(f"real data not present at {DATA / 'endoscopic_stereo' / 'bdis_synthetic'}")
    assert len(datasets.open_dataset("bdis-synthetic")) == 78
    assert [len(datasets.open_dataset(f"bdis-synthetic-{s}")) for s in (30, 31, 32, 33)] == [10, 16, 26, 26]
    name, left, right, gt, focal_px, baseline_m, valid = next(iter(datasets.open_dataset("bdis-synthetic-32")))
    assert name == "bdis-synthetic-32/1" and left.shape == (480, 640, 3) and gt.shape == (480, 640)
    assert (focal_px, baseline_m, valid) == (520.0, 0.005, None)
    expected_depth = datasets.decode_bdis_depth(DATA / "endoscopic_stereo" / "bdis_synthetic" / "32" /
                                                "depth_0000000.png")
    assert np.allclose(gt, 520 * 0.5 / expected_depth, equal_nan=True)


def test_bdis_synthetic_far_limit_is_unknown_and_the_rest_is_a_close_surface():
    """The renderer's far limit (G = 125, R = 255: 50 units) is no surface: the loader gives it no GT disparity,
    and every other pixel of the frame has one, of a surface 1-50 cm away (disparity 5.2-260 px)."""
    if not (DATA / "endoscopic_stereo" / "bdis_synthetic").is_dir():
        pytest.skip(f"real data not present at {DATA / 'endoscopic_stereo' / 'bdis_synthetic'}")
    left_path, _, depth_path = datasets.bdis_synthetic_files(DATA, 33)[0]
    encoded = cv2.imread(str(depth_path), cv2.IMREAD_UNCHANGED)
    far = (encoded[..., 1] == 125) & (encoded[..., 2] == 255)
    assert 0.01 < far.mean() < 0.5  # this frame shows the far lumen
    sample = next(iter(datasets.open_dataset("bdis-synthetic-33", DATA)))
    assert sample.name == f"bdis-synthetic-33/{left_path.stem}"
    np.testing.assert_array_equal(np.isnan(sample.gt_disparity), far)
    known = sample.gt_disparity[~far]
    assert known.min() > 520 * 0.5 / 50 and known.max() < 520 * 0.5 / 1


def test_eval_photometric_compares_stages_with_sgbm_on_common_pixels(run_cli, tmp_path):
    left, right, _ = datasets.load_skimage_motorcycle()
    left = cv2.resize(left, (144, 96), interpolation=cv2.INTER_AREA)
    right = cv2.resize(right, (144, 96), interpolation=cv2.INTER_AREA)
    for sub, image in (("left", left), ("right", right)):
        (tmp_path / "set" / sub).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "set" / sub / "1.png"), image)
    code, out, err = run_cli("eval-photometric", str(tmp_path / "set"), "--json", "--backend", "torch",
                             "--max-disparity", "64", "--sgbm-disparities", "32")
    assert code == 0, err
    rows = json.loads(out)["sets"][str(tmp_path / "set")]["rows"]
    assert [(r["method"], r["stage"]) for r in rows] == [("coarse-to-fine", s) for s in range(4)] + [("sgbm", None)]
    for row in rows[:4]:
        assert 0 <= row["photometric_error"] < 1 and 0 <= row["sgbm_photometric_error"] < 1
        assert row["common_pct"] <= min(row["coverage_pct"], rows[4]["coverage_pct"]) + 1e-9
    # the SGBM row scores SGBM on all its own pixels
    assert rows[4]["photometric_error"] == rows[4]["photometric_error_all"]
    assert rows[4]["common_pct"] == rows[4]["coverage_pct"] < 100


def test_benchmark_json_rows(run_cli):
    code, out, err = run_cli("benchmark-stereo", "--height", "64", "--width", "96", "--repeats", "1", "--json",
                             "--backend", "torch", "--in-process", "--sgbm-disparities", "32", "--paired")
    assert code == 0, err
    rows = json.loads(out)["rows"]
    assert [(r["method"], r["stage"]) for r in rows] == [("sgbm", None)] + [("coarse-to-fine", s) for s in range(4)]
    for row in rows:
        assert {"method", "stage", "height", "width", "median_ms", "peak_mb"} <= set(row)
        assert (row["height"], row["width"]) == (64, 96) and row["median_ms"] > 0
    assert rows[1]["backend"] == "torch"
    # The network rows say which input scale ran: auto enlarges a 96-px-wide pair 2x; SGBM has none.
    assert "input_scale" not in rows[0] and all(row["input_scale"] == 2.0 for row in rows[1:])
    # --paired: network rows also carry the ratio to SGBM timed in alternating rounds; the SGBM row does not.
    assert "paired_ratio" not in rows[0]
    for row in rows[1:]:
        assert row["paired_median_ms"] > 0 and row["paired_sgbm_median_ms"] > 0 and row["paired_ratio"] > 0


def test_paired_ratio_is_the_median_of_per_round_ratios(monkeypatch):
    from stereo_depth_ros.evaluation import benchmark

    clock = iter(range(0, 10_000, 1))  # perf_counter is replaced by a counter: each call's duration is scripted
    durations = iter([3.0, 1.0, 1.0, 4.0, 6.0, 2.0])  # round 0: net 3, sgbm 1; round 1: sgbm 1, net 4; ...
    now = [0.0]

    def fake_counter():
        next(clock)
        return now[0]

    def advance():
        now[0] += next(durations) / 1000.0

    class FakeSGBM:
        def __init__(self):
            self.warm = False

        def estimate(self, left, right):
            if not self.warm:
                self.warm = True
                return
            advance()

    monkeypatch.setattr(benchmark.time, "perf_counter", fake_counter)
    result = benchmark.paired_with_sgbm(advance, None, None, repeats=3, sgbm=FakeSGBM())
    # rounds: (net 3, sgbm 1) -> 3; (sgbm 1, net 4) -> 4; (net 6, sgbm 2) -> 3: median 3
    assert result["paired_ratio"] == pytest.approx(3.0)
    assert result["paired_median_ms"] == pytest.approx(4.0) and result["paired_sgbm_median_ms"] == pytest.approx(1.0)


def test_benchmark_in_a_separate_process_and_bad_sizes(run_cli):
    from stereo_depth_ros.commands.benchmark import benchmark_stereo

    rows = benchmark_stereo(48, 64, repeats=1, stages=(), sgbm_disparities=16, progress=False)
    assert len(rows) == 1 and rows[0]["method"] == "sgbm" and rows[0]["peak_mb"] is not None
    code, _, err = run_cli("benchmark-stereo", "--height", "64", "--width", "96")
    assert code == 2 and "192" in err


def test_bad_input_scale_is_a_usage_error_naming_the_option(run_cli, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("benchmark-stereo", "--height", "64", "--width", "96", "--input-scale", "9")
    assert exit_info.value.code == 2
    assert "argument --input-scale: expected 'auto' or a number in (0, 4], got '9'" in capsys.readouterr().err


def test_input_scale_option_reaches_the_network(run_cli, small_motorcycle):
    def stage3_epe(*options):
        code, out, err = run_cli("eval-pair", "--left", str(small_motorcycle / "left.png"),
                                 "--right", str(small_motorcycle / "right.png"),
                                 "--gt-disparity", str(small_motorcycle / "gt.npy"), "--method", "coarse-to-fine",
                                 "--json", *FAST_NETWORK, *options)
        assert code == 0, err
        return json.loads(out)["rows"][3]["epe_px"]

    assert stage3_epe("--input-scale", "auto") == pytest.approx(stage3_epe())  # auto is the default
    assert stage3_epe("--input-scale", "1") != pytest.approx(stage3_epe(), abs=1e-3)
