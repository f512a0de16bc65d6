"""The benchmark scripts: the accuracy analysis behind docs/stereo.md runs on a real pair and its table adds up;
the GPU check runs where only torch, numpy, OpenCV, safetensors and onnxruntime can be imported."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "benchmarks" / "stereo_error_by_disparity.py"
DEVICE_CHECK = REPO_ROOT / "benchmarks" / "device_check.py"
UNAVAILABLE = ("rclpy", "rosbags", "tqdm", "matplotlib", "yaml", "skimage", "sensor_msgs", "stereo_msgs")
# Run Python code as on a GPU machine without ROS or the package's optional libraries: importing any of UNAVAILABLE
# fails (libraries such as torch fall back when an optional import fails, as they do where it is not installed).
WITHOUT_OPTIONAL = (
    "import sys\n"
    f"UNAVAILABLE = {UNAVAILABLE!r}\n"
    "class Unavailable:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in UNAVAILABLE:\n"
    "            raise ModuleNotFoundError(f'No module named {name!r} (blocked by the test)')\n"
    "sys.meta_path.insert(0, Unavailable())\n")


def _load():
    spec = importlib.util.spec_from_file_location("stereo_error_by_disparity", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_error_by_disparity_table_on_the_motorcycle_pair(capsys):
    module = _load()
    assert module.main(["--set", "skimage-motorcycle", "--bins", "0", "40", "80", "400"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert lines[0].split("|")[3:-1] == [" stage 0 ", " stage 1 ", " stage 2 ", " stage 3 ", " sgbm "]
    rows = lines[1:]  # the separator row starts with "|-"
    assert [r.split("|")[1].strip() for r in rows] == ["0-40", "40-80", "80-400", "all"]
    shares = [float(r.split("|")[2]) for r in rows[:-1]]
    assert sum(shares) == pytest.approx(100.0, abs=0.2)
    sgbm_epe, sgbm_signed = (float(x) for x in rows[-1].split("|")[-2].split("/"))
    assert 0 < sgbm_epe < 5 and abs(sgbm_signed) <= sgbm_epe  # SGBM is accurate on Motorcycle (EPE ~1 px)


def test_error_by_disparity_rejects_bad_options():
    module = _load()
    with pytest.raises(SystemExit):
        module.main(["--set", "skimage-motorcycle", "--input-scale", "0"])
    with pytest.raises(SystemExit):
        module.main(["--set", "skimage-motorcycle", "--bins", "10", "5"])


def _run_without_optional_modules(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_OPTIONAL + code], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def test_models_import_without_ros_tqdm_matplotlib_yaml_or_rosbags(tmp_path):
    code = ("import stereo_depth_ros.models.registry, stereo_depth_ros.models.estimator, "
            "stereo_depth_ros.models.sgbm, stereo_depth_ros.models.inference, stereo_depth_ros.models.weights\n"
            "print([name for name in UNAVAILABLE if name in sys.modules])\n")
    result = _run_without_optional_modules(code, REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    # ... and the blocker works: importing the ROS layer fails.
    result = _run_without_optional_modules("import stereo_depth_ros.ros.conversions\n", REPO_ROOT)
    assert result.returncode != 0 and "blocked by the test" in result.stderr


def test_device_check_runs_on_the_cpu_without_optional_modules(tmp_path):
    out = tmp_path / "device_check.json"
    code = ("import runpy\n"
            f"sys.argv = ['device_check.py', '--allow-cpu', '--height', '64', '--width', '128', '--repeats', '2', "
            f"'--warmup', '1', '--json', {str(out)!r}]\n"
            f"runpy.run_path({str(DEVICE_CHECK)!r}, run_name='__main__')\n")
    result = _run_without_optional_modules(code, tmp_path)  # not from the repository: the script finds it itself
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(out.read_text())
    rows = {(row["model"], row["backend"], row["device"], row["precision"]): row for row in document["rows"]}
    assert set(rows) == {("coarse-to-fine", "torch", "cpu", "float32"), ("coarse-to-fine", "onnx", "cpu", "float32"),
                         ("sgbm", "opencv", "cpu", "float32")}
    onnx = rows[("coarse-to-fine", "onnx", "cpu", "float32")]
    assert len(onnx["difference_to_cpu_float32"]) == 4 and onnx["within_tolerance"]
    assert all(stage["mean_abs_px"] < 1e-3 for stage in onnx["difference_to_cpu_float32"])
    assert all(row["median_ms"] > 0 and row["repeats"] == 2 for row in rows.values())
    assert "| coarse-to-fine | onnx | cpu | float32 |" in result.stdout
    assert document["machine"]["cuda_device"] is None


def test_device_check_refuses_to_run_without_cuda_unless_allowed(tmp_path):
    result = subprocess.run([sys.executable, str(DEVICE_CHECK), "--height", "64", "--width", "128"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    if "CUDA is not available" not in result.stderr:
        pytest.skip("this machine has CUDA")
    assert result.returncode == 2 and "--allow-cpu" in result.stderr


def test_device_check_synthetic_pair_has_the_known_disparity():
    spec = importlib.util.spec_from_file_location("device_check", DEVICE_CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    left, right = module.synthetic_pair(32, 80, disparity=7)
    assert left.shape == right.shape == (32, 80, 3) and left.dtype == np.uint8
    # x_left - x_right = 7: left pixel x is right pixel x - 7.
    np.testing.assert_array_equal(left[:, 7:], right[:, :-7])
    assert not np.array_equal(left, right)


def test_sr_cross_view_warps_the_other_view_onto_this_one(motorcycle_small):
    """benchmarks/sr_cross_view.py on a real pair: the right view, warped by the disparity, reproduces the left far
    better than the unaligned right view (a wrong view or disparity sign would fail), and the SR rows are present."""
    spec = importlib.util.spec_from_file_location("sr_cross_view", REPO_ROOT / "benchmarks" / "sr_cross_view.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from stereo_depth_ros.evaluation.sr_metrics import psnr
    from stereo_depth_ros.models.registry import create_estimator

    left, right, _ = motorcycle_small
    stereo = create_estimator("coarse-to-fine")
    sr_models = {scale: create_estimator(f"single-image-sr-x{scale}") for scale in module.SCALES}
    row = module.score_pair(left, right, stereo, sr_models)
    assert set(row) == {"consistent_pct", "warped_right_psnr_db", *(
        f"{name}_x{s}_{unit}" for s in (2, 4) for name, unit in (
            ("single_image_sr", "psnr_db"), ("detail_transplant", "psnr_db"),
            ("detail_transplant_blend_gain", "db"), ("lr_right_blend_gain", "db"), ("lr_right_local_gain", "db"),
            ("lr_right_local_gain_misaligned", "db")))}
    assert 50.0 < row["consistent_pct"] <= 100.0
    assert 15.0 < row["warped_right_psnr_db"] < 60.0 and row["single_image_sr_x2_psnr_db"] > 15.0
    unwarped = psnr(right[:, :-4], left[:, :-4])  # the right view as it is, not aligned
    assert row["warped_right_psnr_db"] > unwarped + 3.0
    # On this textured scene the HR right view's detail, warped, restores much of what SR misses (a misaligned
    # or wrong-signed warp adds noise instead, and the best blend weight falls to 0); through the LR right view
    # and its own SR far less comes across.
    for scale in (2, 4):
        assert row[f"detail_transplant_x{scale}_psnr_db"] > row[f"single_image_sr_x{scale}_psnr_db"] + 1.0
        assert row[f"detail_transplant_blend_gain_x{scale}_db"] > 1.0
        assert 0.0 <= row[f"lr_right_blend_gain_x{scale}_db"] < row[f"detail_transplant_blend_gain_x{scale}_db"]
        # a weight per block can only do better than one weight; aligned detail beats the 3 px misaligned control
        assert row[f"lr_right_local_gain_x{scale}_db"] >= row[f"lr_right_blend_gain_x{scale}_db"] - 1e-6
        assert row[f"lr_right_local_gain_x{scale}_db"] > row[f"lr_right_local_gain_misaligned_x{scale}_db"]


def test_sr_cross_view_blend_gain_is_the_oracle_least_squares_blend():
    """best_blend_gain on hand examples: an exact other image gives the full gain at w = 1, a useless or opposite one
    gives 0 (w clipped to [0, 1]), and half of the missing step gives the PSNR of the half-way blend."""
    spec = importlib.util.spec_from_file_location("sr_cross_view", REPO_ROOT / "benchmarks" / "sr_cross_view.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from stereo_depth_ros.evaluation.sr_metrics import psnr

    rng = np.random.default_rng(3)
    reference = rng.uniform(0.2, 0.8, (500, 3)).astype(np.float32)
    base = (reference + rng.normal(0, 0.05, reference.shape)).astype(np.float32)
    assert module.best_blend_gain(base, base, reference) == 0.0
    assert module.best_blend_gain(base, 2 * base - reference, reference) == 0.0  # opposite direction: w = 0
    assert module.best_blend_gain(base, reference, reference) > 60.0  # w = 1 reproduces the reference
    overshoot = base + 2.0 * (reference - base)  # the best w is 0.5, which lands on the reference again
    assert module.best_blend_gain(base, overshoot, reference) > 60.0
    noisy = (reference + rng.normal(0, 0.05, reference.shape)).astype(np.float32)  # independent error, same size
    gain = module.best_blend_gain(base, noisy, reference)
    expected = psnr(((base + noisy) / 2)[None], reference[None]) - psnr(base[None], reference[None])
    assert 2.0 < gain and abs(gain - expected) < 0.3  # averaging two independent estimates: about +3 dB
    # per block: where ``other`` is exact in one half and useless in the other, one weight per block recovers the
    # exact half, which a single weight cannot
    image_reference = rng.uniform(0.2, 0.8, (32, 32, 3)).astype(np.float32)
    image_base = np.clip(image_reference + rng.normal(0, 0.05, image_reference.shape), 0, 1).astype(np.float32)
    half_exact = image_base.copy()
    half_exact[:, :16] = image_reference[:, :16]
    half_exact[:, 16:] = 2 * image_base[:, 16:] - image_reference[:, 16:]
    mask = np.ones((32, 32), bool)
    local = module.local_blend_gain(image_base, half_exact, image_reference, mask)
    single = module.best_blend_gain(image_base[mask], half_exact[mask], image_reference[mask])
    assert abs(local - 3.01) < 0.2 and single < local - 1.0  # half the squared error removed: +3 dB


def _colour_transfer():
    spec = importlib.util.spec_from_file_location("cross_modal_colour_transfer",
                                                  REPO_ROOT / "benchmarks" / "cross_modal_colour_transfer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_colour_transfer_corrections_remove_a_cast_and_keep_the_nir_structure():
    """benchmarks/cross_modal_colour_transfer.py: grey-world turns a tinted grey scene grey (only inside the mask's
    statistics), and the NIR-luminance row has the NIR as its luma while keeping the tint's hue."""
    module = _colour_transfer()
    rng = np.random.default_rng(0)
    nir = rng.integers(30, 220, (32, 48), dtype=np.uint8)
    tinted = np.clip(np.repeat(nir[..., None], 3, axis=2) * np.array([0.6, 1.0, 0.8]), 0, 255).astype(np.uint8)
    valid = np.ones(nir.shape, bool)
    balanced = module.grey_world(tinted, valid)
    channel_means = balanced.reshape(-1, 3).mean(axis=0)
    assert np.ptp(channel_means) < 1.0 and np.ptp(tinted.reshape(-1, 3).mean(axis=0)) > 20
    images = module.corrected_images(nir, tinted, valid)
    assert list(images) == list(module.ROWS)
    assert np.array_equal(images["replicated-nir"][..., 1], nir)
    luma = cv2.cvtColor(images["pseudo-rgb nir-luminance"], cv2.COLOR_BGR2YCrCb)[..., 0].astype(int)
    assert np.abs(luma - nir).max() <= 2  # the NIR's structure, up to rounding
    green = images["pseudo-rgb nir-luminance"].reshape(-1, 3).mean(axis=0)
    assert green[1] > green[0] + 10  # the tint's hue (green over blue) survives
    # chroma scaled towards grey: a quarter of the tint is left, and factor 0 gives back the grey NIR
    quarter = images["pseudo-rgb nir-luminance chroma x0.25"].reshape(-1, 3).mean(axis=0)
    assert 0 < quarter[1] - quarter[0] < (green[1] - green[0]) / 2
    assert np.abs(module.with_luminance(tinted, nir, 0.0).astype(int) - images["replicated-nir"]).max() <= 2
    with pytest.raises(ValueError, match="valid pixel"):
        module.grey_world(tinted, np.zeros(nir.shape, bool))


def test_colour_transfer_rows_on_held_out_pairs(shared_data):
    """On two held-out indoor pairs the replicated-NIR row equals eval-cross-modal's baseline for the same pairs."""
    from stereo_depth_ros.commands.cross_modal import evaluate_cross_modal

    module = _colour_transfer()
    indoor = shared_data / "nir_rgb" / "indoor"
    result = module.evaluate(indoor, limit=2)
    assert result["pairs"] == 2 and [row["method"] for row in result["rows"]] == list(module.ROWS)
    reference = evaluate_cross_modal(indoor, shared_data / "nir_rgb" / "country", limit=2)
    replicated = {row["method"]: row for row in reference["rows"]}["replicated-nir"]
    for key in ("psnr_db", "ssim", "angular_error_deg"):
        assert result["rows"][0][key] == pytest.approx(replicated[key], rel=1e-6)


def test_bdis_depth_decoding_benchmark_prints_every_set_and_writes_its_figure(tmp_path, capsys, shared_data):
    """benchmarks/bdis_depth_decoding.py behind docs/evaluation.md: one row per BDIS set, the corrected decoding
    fitting better than the MATLAB sum in each, and the one-row figure."""
    if not (shared_data / "endoscopic_stereo" / "bdis_synthetic").is_dir():
        pytest.skip(f"{shared_data / 'endoscopic_stereo' / 'bdis_synthetic'} is absent")
    path = REPO_ROOT / "benchmarks" / "bdis_depth_decoding.py"
    spec = importlib.util.spec_from_file_location("bdis_depth_decoding", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    figure = tmp_path / "row.png"
    assert module.main(["--data-root", str(shared_data), "--every", "26", "--figure", str(figure)]) == 0
    rows = [line.strip("|").split("|") for line in capsys.readouterr().out.splitlines() if line.startswith("| 3")]
    assert [row[0].strip() for row in rows] == ["30", "31", "32", "33"]
    for row in rows:
        corrected, main_synthetic = float(row[2]), float(row[3])  # photometric errors
        assert corrected < main_synthetic
        assert float(row[8]) < 0.05 < float(row[9])  # depth step where green steps: corrected vs MATLAB sum
    assert cv2.imread(str(figure)) is not None
