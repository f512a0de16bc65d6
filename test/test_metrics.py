"""Metrics and GT readers against hand-computed examples."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from stereo_depth_ros.evaluation import metrics
from stereo_depth_ros.evaluation.readers import (decode_bdis_depth, read_disparity, read_middlebury2003_disparity,
                                                 read_pfm, write_pfm)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NAN = np.nan

# Ground truth: (1, 0) is 0 (unknown) and (0, 2) NaN, so V has 6 pixels. The prediction has no value at (0, 3),
# so P has 5 pixels with errors 1, 3, 0, 4, 1.
GT = np.array([[10.0, 20.0, NAN, 4.0], [0.0, 8.0, 30.0, 50.0]], dtype=np.float32)
PRED = np.array([[11.0, 23.0, 5.0, NAN], [7.0, 8.0, 26.0, 49.0]], dtype=np.float32)


def test_end_point_error_is_the_mean_absolute_error_over_scored_pixels():
    assert metrics.epe_px(PRED, GT) == pytest.approx((1 + 3 + 0 + 4 + 1) / 5)


def test_bad_pixels_count_errors_above_the_threshold():
    assert metrics.bad_pct(PRED, GT) == pytest.approx(100 * 2 / 5)  # errors 3 and 4 exceed 2 px
    assert metrics.bad_pct(PRED, GT, threshold=0.5) == pytest.approx(100 * 4 / 5)
    assert metrics.bad_pct(PRED, GT, threshold=4.0) == pytest.approx(0.0)  # strictly greater


def test_d1_needs_both_3_px_and_5_percent():
    # error 3 at gt 20 is not > 3 px; error 4 at gt 30 is > 3 px and > 1.5 px: one outlier of five.
    assert metrics.d1_pct(PRED, GT) == pytest.approx(100 * 1 / 5)
    # error 4 at a gt of 100 is below 5 % (5 px): no outlier.
    assert metrics.d1_pct(np.array([[104.0]]), np.array([[100.0]])) == 0.0
    assert metrics.d1_pct(np.array([[106.0]]), np.array([[100.0]])) == 100.0


def test_density_is_the_share_of_gt_valid_pixels_with_a_prediction():
    assert metrics.density_pct(PRED, GT) == pytest.approx(100 * 5 / 6)


def test_mask_restricts_every_metric():
    mask = np.ones_like(GT, dtype=bool)
    mask[1, 2] = False  # drop the pixel with error 4
    assert metrics.epe_px(PRED, GT, mask) == pytest.approx((1 + 3 + 0 + 1) / 4)
    assert metrics.bad_pct(PRED, GT, mask=mask) == pytest.approx(100 * 1 / 4)
    assert metrics.density_pct(PRED, GT, mask) == pytest.approx(100 * 4 / 5)


def test_depth_errors_convert_both_disparities_to_metres_and_report_millimetres():
    # f * B = 100 px * 0.1 m = 10 px m, Z = 10 / d.
    differences = [10 / 11 - 10 / 10, 10 / 23 - 10 / 20, 0.0, 10 / 26 - 10 / 30, 10 / 49 - 10 / 50]
    mae, rmse = metrics.depth_errors_mm(PRED, GT, focal_px=100.0, baseline_m=0.1)
    assert mae == pytest.approx(1000 * np.mean(np.abs(differences)), rel=1e-6)
    assert rmse == pytest.approx(1000 * math.sqrt(np.mean(np.square(differences))), rel=1e-6)
    assert metrics.mae_mm(PRED, GT, 100.0, 0.1) == pytest.approx(mae)
    assert metrics.rmse_mm(PRED, GT, 100.0, 0.1) == pytest.approx(rmse)


def test_depth_errors_add_the_disparity_offset():
    mae, _ = metrics.depth_errors_mm(np.array([[8.0]]), np.array([[10.0]]), 100.0, 0.1, disparity_offset_px=2.0)
    assert mae == pytest.approx(1000 * (10 / 10 - 10 / 12))


def test_depth_errors_reject_bad_calibration():
    with pytest.raises(ValueError, match="focal_px"):
        metrics.depth_errors_mm(PRED, GT, focal_px=0.0, baseline_m=0.1)
    with pytest.raises(ValueError, match="baseline_m"):
        metrics.depth_errors_mm(PRED, GT, focal_px=100.0, baseline_m=float("nan"))


def test_stereo_metrics_returns_every_key_and_none_without_calibration():
    result = metrics.stereo_metrics(PRED, GT)
    assert set(result) == {"epe_px", "bad2_pct", "d1_pct", "density_pct", "mae_mm", "rmse_mm"}
    assert result["epe_px"] == pytest.approx(1.8)
    assert result["mae_mm"] is None and result["rmse_mm"] is None
    with_depth = metrics.stereo_metrics(PRED, GT, focal_px=100.0, baseline_m=0.1)
    assert with_depth["mae_mm"] > 0 and with_depth["rmse_mm"] >= with_depth["mae_mm"]
    with pytest.raises(ValueError, match="both"):
        metrics.stereo_metrics(PRED, GT, focal_px=100.0)


def test_metrics_are_nan_without_scored_pixels_and_reject_shape_mismatch():
    empty = np.full_like(GT, np.nan)
    assert math.isnan(metrics.epe_px(empty, GT))
    assert math.isnan(metrics.bad_pct(empty, GT))
    assert metrics.density_pct(empty, GT) == 0.0
    with pytest.raises(ValueError, match="differs"):
        metrics.epe_px(PRED[:, :3], GT)


def test_disparity_valid_mask_needs_a_source_inside_the_right_image():
    disparity = np.array([[1.0, 1.0, 5.0, NAN, -1.0, 0.5]], dtype=np.float32)
    # x - d: -1 (out), 0 (in), -3 (out), nan, 5 but d <= 0, 4.5 (in).
    assert metrics.disparity_valid_mask(disparity).tolist() == [[False, True, False, False, False, True]]


def test_photometric_error_of_constant_images_matches_the_formula():
    left = np.full((8, 10, 3), 128, np.uint8)
    right = np.full((8, 10, 3), 77, np.uint8)
    a, b = 128 / 255, 77 / 255
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim = (2 * a * b + c1) * c2 / ((a * a + b * b + c1) * c2)  # no variance in a constant image
    expected = 0.85 * (1 - ssim) / 2 + 0.15 * abs(a - b)
    value = metrics.photometric_error(left, right, np.full((8, 10), 2.0, np.float32))
    assert value == pytest.approx(expected, rel=1e-4)


def test_photometric_error_is_zero_for_the_true_disparity_only():
    rng = np.random.default_rng(0)
    right = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    left = np.zeros_like(right)
    left[:, 4:] = right[:, :-4]  # left(x) = right(x - 4): disparity 4
    interior = np.zeros((24, 40), bool)
    interior[1:-1, 6:-1] = True  # away from the border, where SSIM windows are padded
    true_error = metrics.photometric_error(left, right, np.full((24, 40), 4.0, np.float32), interior)
    wrong_error = metrics.photometric_error(left, right, np.full((24, 40), 1.0, np.float32), interior)
    assert true_error < 1e-5
    assert wrong_error > 0.05
    nothing = metrics.photometric_error(left, right, np.full((24, 40), np.nan, np.float32))
    assert math.isnan(nothing)
    with pytest.raises(ValueError, match="differs"):
        metrics.photometric_error(left, right, np.ones((24, 39), np.float32))


def test_fill_row_holes_uses_the_nearest_known_value_on_the_left_then_right():
    filled = metrics.fill_row_holes(np.array([[NAN, 3.0, NAN, 5.0], [NAN, NAN, NAN, NAN]], dtype=np.float32))
    assert filled.tolist() == [[3.0, 3.0, 3.0, 5.0], [0.0, 0.0, 0.0, 0.0]]


# --- readers -------------------------------------------------------------------------------------------------------

def test_read_npy_marks_nan_inf_and_non_positive_values_unknown(tmp_path):
    path = tmp_path / "d.npy"
    np.save(path, np.array([[1.5, 0.0], [-2.0, np.inf]]))
    disparity = read_disparity(path)
    assert disparity.dtype == np.float32
    assert disparity[0, 0] == 1.5 and np.isnan(disparity[0, 1]) and np.isnan(disparity[1]).all()


def test_read_16_bit_png_divides_by_256(tmp_path):
    path = tmp_path / "d.png"
    cv2.imwrite(str(path), np.array([[0, 256, 2560, 65535]], dtype=np.uint16))
    disparity = read_disparity(path)
    assert np.isnan(disparity[0, 0])
    assert disparity[0, 1:].tolist() == pytest.approx([1.0, 10.0, 65535 / 256])


def test_read_disparity_rejects_8_bit_png_unknown_suffix_and_corrupt_files(tmp_path):
    eight_bit = tmp_path / "eight.png"
    cv2.imwrite(str(eight_bit), np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="eight.png"):
        read_disparity(eight_bit)
    text = tmp_path / "d.txt"
    text.write_text("1 2 3")
    with pytest.raises(ValueError, match="d.txt"):
        read_disparity(text)
    corrupt = tmp_path / "bad.pfm"
    corrupt.write_bytes(b"Pf\n4 4\n-1.0\n" + b"\x00" * 10)
    with pytest.raises(ValueError, match="bad.pfm"):
        read_disparity(corrupt)
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        read_disparity(tmp_path / "missing.npy")


def test_pfm_rows_are_stored_bottom_to_top_in_either_byte_order(tmp_path):
    array = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)
    little = tmp_path / "little.pfm"
    # Hand-made file: the last image row comes first.
    little.write_bytes(b"Pf\n3 2\n-1.0\n" + np.array([4, 5, 6, 1, 2, 3], "<f4").tobytes())
    big = tmp_path / "big.pfm"
    big.write_bytes(b"Pf \n3 2 \n1.0\n" + np.array([4, 5, 6, 1, 2, 3], ">f4").tobytes())
    assert read_pfm(little).tolist() == array.tolist()
    assert read_pfm(big).tolist() == array.tolist()
    written = tmp_path / "written.pfm"
    write_pfm(written, array)
    assert written.read_bytes() == little.read_bytes()
    round_trip = np.array([[0.25, np.inf], [7.5, 0.0]], np.float32)
    write_pfm(written, round_trip)
    read_back = read_disparity(written)
    assert read_back[0, 0] == 0.25 and read_back[1, 0] == 7.5 and np.isnan(read_back[:, 1]).all()


def test_middlebury_2014_pfm_matches_scikit_image_motorcycle_orientation():
    path = DATA / "general_stereo" / "middlebury2014_motorcycle_q" / "disp0GT.pfm"
    if not path.is_file():
        pytest.skip(f"real data not present at {path}")
    from skimage import data

    gt = read_disparity(path)
    reference = data.stereo_motorcycle()[2][:gt.shape[0]]
    both = np.isfinite(gt) & np.isfinite(reference)
    assert 5 < np.nanmin(gt) and np.nanmax(gt) < 80  # pixels, not the scale-multiplied values
    upright = np.abs(gt - reference)[both].mean()
    flipped = np.abs(gt[::-1] - reference)[np.isfinite(gt[::-1]) & np.isfinite(reference)].mean()
    assert upright < 5 < flipped


def test_middlebury_2003_disparity_is_value_over_4(tmp_path):
    path = tmp_path / "disp2.pgm"
    cv2.imwrite(str(path), np.array([[0, 40, 255]], np.uint8))
    disparity = read_middlebury2003_disparity(path)
    assert np.isnan(disparity[0, 0]) and disparity[0, 1:].tolist() == [10.0, 63.75]


def test_bdis_depth_decoding_reads_the_integer_part_from_green_and_the_fraction_from_red(tmp_path):
    path = tmp_path / "depth_0000001.png"
    pixels = np.array([[(0, 15, 128),     # OpenCV order B, G, R: G = round(2.55 * 6), R = round(255 * 0.502)
                        (0, 15, 255),     # 6 + 255 / 255 = 7.0 ...
                        (0, 18, 0),       # ... = 7 + 0: continuous where red wraps to 0 and green steps
                        (0, 125, 255),    # 49 + 1 = 50 units: the renderer's far limit, unknown
                        (0, 0, 0)]], np.uint8)  # 0: unknown
    cv2.imwrite(str(path), pixels)
    depth = decode_bdis_depth(path)[0]
    assert depth[:3].tolist() == pytest.approx([6 + 128 / 255, 7.0, 7.0])
    assert np.isnan(depth[3]) and np.isnan(depth[4])
    # the BDIS repository's MATLAB sum, with and without its evaluation script's 0.5: a jump of 1.17 units
    # between the two pixels at 7.0
    matlab = decode_bdis_depth(path, formula="load-gt-depth")[0]
    assert matlab[0] == pytest.approx((1 + 100 * 16 + 129) / 256)
    assert matlab[2] - matlab[1] == pytest.approx((100 * 19 + 1 - 100 * 16 - 256) / 256)
    assert decode_bdis_depth(path, formula="main-synthetic")[0, 0] == pytest.approx(matlab[0] - 0.5)
    pixels[0, 0, 0] = 7  # a blue value: not the encoding of the BDIS sets
    cv2.imwrite(str(path), pixels)
    with pytest.raises(ValueError, match="blue"):
        decode_bdis_depth(path)
    with pytest.raises(ValueError, match="formula"):
        decode_bdis_depth(path, formula="sum")


def test_bdis_depth_decoding_fits_the_rendered_images_better_than_the_matlab_sum(shared_data):
    """The GT disparity of the integer-fraction decoding warps the right view onto the left one more closely
    than that of the MATLAB formula, on one pair of each set (docs/evaluation.md has every pair)."""
    from stereo_depth_ros.evaluation.metrics import masked_mean, photometric_error_image
    from stereo_depth_ros.images import read_image_bgr

    root = shared_data / "endoscopic_stereo" / "bdis_synthetic"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    for set_id, image, depth_file in ((30, 4, 4), (32, 5, 4), (33, 7, 7)):
        left = read_image_bgr(root / str(set_id) / "images_rectified" / "left" / f"{image}.png")
        right = read_image_bgr(root / str(set_id) / "images_rectified" / "right" / f"{image}.png")
        errors = {}
        for formula in ("integer-fraction", "main-synthetic"):
            disparity = 520 * 0.5 / decode_bdis_depth(root / str(set_id) / f"depth_{depth_file:07d}.png", formula)
            error = photometric_error_image(left, right, disparity)
            errors[formula] = masked_mean(error, np.isfinite(error))
        assert errors["integer-fraction"] < 0.85 * errors["main-synthetic"], (set_id, errors)


def test_zero_or_negative_predictions_are_no_value():
    from stereo_depth_ros.evaluation.metrics import density_pct, epe_px

    gt = np.array([[10.0, 10.0, 10.0, 10.0]], dtype=np.float32)
    pred = np.array([[11.0, 0.0, -2.0, np.nan]], dtype=np.float32)
    assert density_pct(pred, gt) == 25.0
    assert epe_px(pred, gt) == 1.0
