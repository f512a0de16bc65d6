"""NIR-to-RGB translation with CycleGAN (issue 14): generator and discriminator shapes, the image pool, the LSGAN
loss, a short training run, the colour metrics on hand examples, the estimator's inputs and errors, the weights and
``eval-cross-modal --json``."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math

import cv2
import numpy as np
import pytest
import torch

from stereo_depth_ros.evaluation.cross_modal_metrics import (angular_error_deg, apply_linear_colour,
                                                             fit_linear_colour, masked_psnr, masked_ssim)
from stereo_depth_ros.models.cross_modal import (ImagePool, build_discriminator, build_generator, load_generator,
                                                 lsgan_loss, nir_to_grey, save_generator)
from stereo_depth_ros.models.registry import create_estimator, model_spec
from stereo_depth_ros.models.weights import WeightsError

TINY = {"base_channels": 4, "residual_blocks": 1}


def tiny_generator(direction: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_generator({**TINY, "out_channels": 3 if direction == "nir-to-rgb" else 1}).eval()


def textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random colour texture, (H, W, 3) uint8 BGR."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3)).astype(np.uint8)
    return cv2.resize(small, (small.shape[1] * 8, small.shape[0] * 8), interpolation=cv2.INTER_CUBIC)[:height, :width]


# Networks ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("height,width", [(16, 16), (20, 36), (64, 48)])
def test_generator_keeps_the_size_and_range(height, width):
    generator = build_generator(TINY)
    output = generator(torch.rand(2, 3, height, width))
    assert output.shape == (2, 3, height, width)
    assert float(output.detach().min()) >= 0.0 and float(output.detach().max()) <= 1.0


def test_nir_generator_replicates_its_one_channel():
    output = build_generator({**TINY, "out_channels": 1})(torch.rand(1, 3, 24, 32))
    assert output.shape == (1, 3, 24, 32)
    assert torch.equal(output[:, 0], output[:, 1]) and torch.equal(output[:, 1], output[:, 2])


def test_input_skip_generators_start_as_identity_and_grey():
    x = torch.rand(2, 3, 20, 24)
    assert torch.equal(build_generator({**TINY, "input_skip": True})(x), x)
    grey = build_generator({**TINY, "input_skip": True, "out_channels": 1})(x)
    assert torch.allclose(grey, x.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1))
    assert "input_skip" not in build_generator(TINY).config  # the plain generator's files stay as they are


@pytest.mark.parametrize("size,patches", [(128, 14), (70, 6), (32, 2)])
def test_patch_discriminator_scores_one_value_per_patch(size, patches):
    scores = build_discriminator({"base_channels": 4})(torch.rand(3, 3, size, size + 8))
    assert scores.shape[:2] == (3, 1) and scores.shape[2] == patches and scores.shape[3] >= patches


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="unknown generator configuration keys"):
        build_generator({"blocks": 3})
    with pytest.raises(ValueError, match="out_channels"):
        build_generator({"out_channels": 2})
    with pytest.raises(ValueError, match="base_channels"):
        build_discriminator({"base_channels": 0})


def test_lsgan_loss_on_a_hand_example():
    scores = torch.tensor([[0.5, 1.5], [1.0, 0.0]])
    assert lsgan_loss(scores, real=True).item() == pytest.approx((0.25 + 0.25 + 0.0 + 1.0) / 4)
    assert lsgan_loss(scores, real=False).item() == pytest.approx((0.25 + 2.25 + 1.0 + 0.0) / 4)


# Image pool ----------------------------------------------------------------------------------------------------

def test_image_pool_fills_first_then_mixes_stored_and_new_images():
    pool = ImagePool(size=4, seed=3)
    first = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first) and len(pool) == 4  # while filling: returned and stored
    inserted = {0.0, 1.0, 2.0, 3.0}
    stored_returned = 0
    for step in range(400):
        value = 100.0 + step
        returned = float(pool.query(torch.full((1, 1, 1, 1), value))[0, 0, 0, 0])
        held = {float(image) for image in pool.images}
        assert len(pool) == 4
        if returned == value:
            assert value not in held  # a new image returned is not stored
        else:
            stored_returned += 1
            assert returned in inserted and returned not in held  # an older image, replaced by the new one
            assert value in held
        inserted.add(value)
    assert 0.4 < stored_returned / 400 < 0.6  # probability 0.5


def test_image_pool_is_repeatable_with_a_seed_and_off_at_size_zero():
    batches = [torch.full((2, 1, 1, 1), float(k)) for k in range(30)]
    a, b = ImagePool(3, seed=7), ImagePool(3, seed=7)
    assert all(torch.equal(a.query(x), b.query(x)) for x in batches)
    x = torch.rand(2, 3, 4, 4)
    assert torch.equal(ImagePool(0).query(x), x)
    with pytest.raises(ValueError, match="pool size"):
        ImagePool(-1)


# Training ------------------------------------------------------------------------------------------------------

def write_pairs(folder, count: int = 2, size: int = 48):
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        rgb = textured(size, size, seed=index)
        nir = cv2.cvtColor(rgb, cv2.COLOR_BGR2GRAY)
        cv2.imwrite(str(folder / f"{index:04d}_rgb.png"), rgb)
        cv2.imwrite(str(folder / f"{index:04d}_nir.png"), nir)
    return folder


def test_short_training_lowers_the_cycle_loss(tmp_path):
    from stereo_depth_ros.training.cross_modal_trainer import TrainCrossModalOptions, train_cross_modal

    data = write_pairs(tmp_path / "pairs")
    cards = train_cross_modal(TrainCrossModalOptions(
        out=tmp_path / "run", data=[str(data)], steps=60, crop=(32, 32), short_side=None, lr=3e-3,
        generator=TINY, discriminator={"base_channels": 4}, checkpoint_every=30, threads=1, progress=False))
    with open(tmp_path / "run" / "cyclegan.losses.csv") as stream:
        rows = [{key: float(value) for key, value in row.items()} for row in csv.DictReader(stream)]
    assert len(rows) == 60
    first, last = np.mean([r["cycle"] for r in rows[:5]]), np.mean([r["cycle"] for r in rows[-5:]])
    assert last < 0.8 * first, (first, last)
    assert set(cards) == {"nir-to-rgb", "rgb-to-nir"} and cards["nir-to-rgb"]["steps"] == 60
    for direction, name in (("nir-to-rgb", "cyclegan_nir_to_rgb"), ("rgb-to-nir", "cyclegan_rgb_to_nir")):
        path = tmp_path / "run" / f"{name}.safetensors"
        assert json.loads(path.with_suffix(".json").read_text())["sha256"] == cards[direction]["sha256"]
        generator, metadata = load_generator(path, direction)
        assert metadata["direction"] == direction and generator.config["base_channels"] == 4


def test_training_stops_and_resumes_from_its_checkpoint(tmp_path):
    from stereo_depth_ros.training.cross_modal_trainer import TrainCrossModalOptions, train_cross_modal

    data = write_pairs(tmp_path / "pairs")
    options = dict(out=tmp_path / "run", data=[str(data)], steps=12, crop=(32, 32), short_side=None,
                   generator=TINY, discriminator={"base_channels": 4}, checkpoint_every=4, threads=1, progress=False)
    cards = train_cross_modal(TrainCrossModalOptions(**options, stop_at=8))
    assert cards["nir-to-rgb"]["steps"] == 8
    assert not (tmp_path / "run" / "cyclegan_nir_to_rgb.safetensors").exists()  # unfinished: no final generator
    checkpoint = tmp_path / "run" / "cyclegan.ckpt.safetensors"
    cards = train_cross_modal(TrainCrossModalOptions(**options, resume=checkpoint))
    assert cards["rgb-to-nir"]["steps"] == 12
    with open(tmp_path / "run" / "cyclegan.losses.csv") as stream:
        assert [int(float(row["step"])) for row in csv.DictReader(stream)] == list(range(1, 13))
    load_generator(tmp_path / "run" / "cyclegan_rgb_to_nir.safetensors", "rgb-to-nir")


def test_unpaired_dataset_draws_nir_and_rgb_independently(tmp_path):
    from stereo_depth_ros.data.nir_rgb import UnpairedNirRgbDataset

    dataset = UnpairedNirRgbDataset(write_pairs(tmp_path / "pairs", count=4), crop=(16, 16), augment=False,
                                    samples_per_epoch=40, short_side=None)
    item = dataset[3]
    assert item["nir"].shape == item["rgb"].shape == (3, 16, 16)
    assert torch.equal(item["nir"][0], item["nir"][2])  # NIR as 3-channel grey
    assert torch.equal(dataset[3]["rgb"], item["rgb"])  # repeatable
    # A paired reader would give the RGB whose grey is the NIR; unpaired items mostly do not.
    grey = [np.allclose(cv2.cvtColor(np.ascontiguousarray(dataset[k]["rgb"].numpy().transpose(1, 2, 0)[..., ::-1]),
                                     cv2.COLOR_BGR2GRAY), dataset[k]["nir"][0].numpy(), atol=0.02)
            for k in range(40)]
    assert sum(grey) < 20


# Metrics -------------------------------------------------------------------------------------------------------

def test_angular_error_on_hand_examples():
    grey = np.full((8, 8, 3), 90, np.uint8)
    assert angular_error_deg(grey, grey * 2) == pytest.approx(0.0, abs=1e-6)  # brightness does not count
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 2] = 200
    green = np.zeros((8, 8, 3), np.uint8)
    green[..., 1] = 50
    assert angular_error_deg(red, green) == pytest.approx(90.0)
    assert angular_error_deg(grey, red) == pytest.approx(math.degrees(math.acos(1 / math.sqrt(3))))
    mask = np.zeros((8, 8), bool)
    mask[:, :4] = True
    mixed = red.copy()
    mixed[:, 4:] = green[:, 4:]
    assert angular_error_deg(mixed, red, mask) == pytest.approx(0.0, abs=1e-6)
    assert angular_error_deg(mixed, red) == pytest.approx(45.0)


def test_masked_psnr_and_ssim_on_hand_examples():
    reference = np.full((16, 16, 3), 100, np.uint8)
    estimate = reference.copy()
    estimate[:, 8:] = 151  # error 0.2 on half the image
    mask = np.zeros((16, 16), bool)
    mask[:, :8] = True
    assert masked_psnr(estimate, reference, mask) == math.inf
    assert masked_psnr(estimate, reference, ~mask) == pytest.approx(10 * math.log10(1 / 0.04))
    assert masked_psnr(estimate, reference) == pytest.approx(10 * math.log10(1 / 0.02))
    assert masked_ssim(reference, reference, mask) == pytest.approx(1.0)
    assert masked_ssim(textured(32, 32, 1), textured(32, 32, 2)) < 0.5
    with pytest.raises(ValueError, match="valid mask shape"):
        masked_psnr(estimate, reference, mask[:8])
    with pytest.raises(ValueError, match="no pixel"):
        masked_psnr(estimate, reference, np.zeros((16, 16), bool))


def test_linear_colour_fit_recovers_an_affine_map():
    rng = np.random.default_rng(0)
    nir = rng.integers(0, 256, (20, 30)).astype(np.uint8)
    truth = np.array([[0.2, 0.1], [0.5, 0.2], [0.7, 0.0]])  # B, G, R
    rgb = apply_linear_colour(nir, truth)
    fitted = fit_linear_colour([nir], [rgb])
    assert np.allclose(fitted, truth, atol=0.01)


# Estimator -----------------------------------------------------------------------------------------------------

def test_registry_entries():
    forward, backward = model_spec("cyclegan-nir-to-rgb"), model_spec("cyclegan-rgb-to-nir")
    assert (forward.family, forward.input_kind, forward.output_kinds) == ("cross-modal", "nir-image", ("image",))
    assert (backward.family, backward.input_kind, backward.output_kinds) == ("cross-modal", "image", ("image",))
    assert forward.default_weights.name == "cyclegan_nir_to_rgb.safetensors"
    assert backward.default_weights.name == "cyclegan_rgb_to_nir.safetensors"
    assert set(forward.options) == {"weights", "backend", "device", "cache_dir"}


@pytest.fixture()
def tiny_weights(tmp_path):
    paths = {}
    for direction in ("nir-to-rgb", "rgb-to-nir"):
        paths[direction] = tmp_path / f"{direction}.safetensors"
        save_generator(tiny_generator(direction), paths[direction], direction)
    return paths


def test_estimator_inputs_sizes_and_errors(tiny_weights):
    estimator = create_estimator("cyclegan-nir-to-rgb", weights=str(tiny_weights["nir-to-rgb"]), backend="torch")
    nir = cv2.cvtColor(textured(37, 51), cv2.COLOR_BGR2GRAY)
    output = estimator.predict(nir)["image"]
    assert output.shape == (37, 51, 3) and output.dtype == np.uint8
    assert np.array_equal(estimator.predict(np.repeat(nir[..., None], 3, axis=2))["image"], output)
    assert np.array_equal(estimator.predict(nir.astype(np.uint16) * 257)["image"], output)  # mono16
    assert estimator.predict(np.zeros((3, 5), np.uint8))["image"].shape == (3, 5, 3)
    for bad, message in ((nir.astype(np.float32), "float32"), (np.zeros((8, 8, 4), np.uint8), "shape"),
                         (np.zeros((0, 8), np.uint8), "empty"), (np.zeros((8, 8, 3), np.uint16), "uint8"),
                         ([[1, 2]], "numpy array")):
        with pytest.raises(ValueError, match=message):
            estimator.predict(bad)
    to_nir = create_estimator("cyclegan-rgb-to-nir", weights=str(tiny_weights["rgb-to-nir"]), backend="torch")
    nir_out = to_nir.predict(textured(21, 30))["image"]
    assert nir_out.shape == (21, 30, 3) and np.array_equal(nir_out[..., 0], nir_out[..., 2])
    with pytest.raises(ValueError, match="RGB image must be"):
        to_nir.predict(nir)


def test_weights_round_trip_and_backends_agree(tiny_weights, tmp_path):
    generator = tiny_generator("nir-to-rgb")
    nir = cv2.cvtColor(textured(40, 44, seed=5), cv2.COLOR_BGR2GRAY)
    with torch.no_grad():
        x = torch.from_numpy(np.repeat(nir[None], 3, axis=0)).float()[None] / 255.0
        expected = generator(x)[0].numpy().transpose(1, 2, 0)[..., ::-1]
    for backend in ("torch", "onnx"):
        estimator = create_estimator("cyclegan-nir-to-rgb", weights=str(tiny_weights["nir-to-rgb"]), backend=backend,
                                     cache_dir=str(tmp_path / "onnx"))
        estimator.prepare(40, 44)
        output = estimator.predict(nir)["image"].astype(np.float32) / 255.0
        assert np.abs(output - expected).max() <= 1.5 / 255.0, backend
    with pytest.raises(WeightsError, match="expected 'rgb-to-nir'"):
        create_estimator("cyclegan-rgb-to-nir", weights=str(tiny_weights["nir-to-rgb"]), backend="torch")
    with pytest.raises(ValueError, match="1 output channel"):
        save_generator(tiny_generator("nir-to-rgb"), tmp_path / "x.safetensors", "rgb-to-nir")


def test_nir_to_grey_conversions():
    assert nir_to_grey(np.array([[0, 257, 65535]], np.uint16)).tolist() == [[0, 1, 255]]
    assert nir_to_grey(np.full((2, 2, 1), 7, np.uint8)).tolist() == [[7, 7], [7, 7]]


@pytest.mark.parametrize("direction", ["nir-to-rgb", "rgb-to-nir"])
def test_packaged_weights_load(direction):
    spec = model_spec(f"cyclegan-{direction}")
    if not spec.default_weights.is_file():
        pytest.skip(f"packaged weights {spec.default_weights} are not built yet (train-cross-modal writes them)")
    generator, metadata = load_generator(spec.default_weights, direction)
    assert metadata["direction"] == direction
    card = json.loads(spec.default_weights.with_suffix(".json").read_text())
    assert card["steps"] > 0 and card["direction"] == direction


# eval-cross-modal ----------------------------------------------------------------------------------------------

def test_eval_cross_modal_json_has_exactly_the_fields(shared_data, tiny_weights):
    from stereo_depth_ros.cli import main

    if not (shared_data / "nir_rgb" / "indoor").is_dir():
        pytest.skip(f"NIR/RGB pairs {shared_data / 'nir_rgb' / 'indoor'} are absent")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["eval-cross-modal", "--limit", "2", "--short-side", "96", "--weights",
                     str(tiny_weights["nir-to-rgb"]), "--backend", "torch", "--json"])
    assert code == 0
    document = json.loads(out.getvalue())
    assert list(document) == ["rows"]
    assert [row["method"] for row in document["rows"]] == ["replicated-nir", "linear-colour", "pseudo-rgb"]
    for row in document["rows"]:
        assert set(row) == {"method", "psnr_db", "ssim", "angular_error_deg", "depth_abs_rel", "depth_delta1"}
        assert all(isinstance(row[key], float) for key in row if key != "method")
        assert 0 < row["psnr_db"] < 60 and 0 <= row["angular_error_deg"] <= 90 and 0 <= row["depth_delta1"] <= 1
    # the oracle colour row: the least-squares affine map of each pair onto its own RGB, so never worse in MSE than
    # the identity map that replicated-nir is (to the 8-bit rounding)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["eval-cross-modal", "--limit", "2", "--short-side", "96", "--weights",
                     str(tiny_weights["nir-to-rgb"]), "--backend", "torch", "--json", "--oracle-colour"]) == 0
    rows = {row["method"]: row for row in json.loads(out.getvalue())["rows"]}
    assert list(rows) == ["replicated-nir", "linear-colour", "pseudo-rgb", "oracle-linear-colour"]
    assert rows["replicated-nir"] == {**document["rows"][0]}
    assert rows["oracle-linear-colour"]["psnr_db"] >= rows["replicated-nir"]["psnr_db"] - 0.05
    assert rows["oracle-linear-colour"]["psnr_db"] > rows["linear-colour"]["psnr_db"]


# NIR/RGB stereo pairs in one modality ---------------------------------------------------------------------------

def test_colour_histogram_matching_gives_each_channel_the_reference_histogram():
    from stereo_depth_ros.models.cross_modal import match_colour_histograms

    rng = np.random.default_rng(3)
    grey = np.repeat(rng.permutation(256).astype(np.uint8).reshape(16, 16, 1), 3, axis=2)
    reference = np.dstack([np.arange(256) // 4, np.arange(256) // 2 + 64, 255 - np.arange(256) // 8]).astype(
        np.uint8).reshape(16, 16, 3)
    matched = match_colour_histograms(grey, reference)
    assert matched.shape == grey.shape and matched.dtype == np.uint8
    for channel in range(3):  # the reference channel's histogram (quantiles interpolated: to one grey level), in
        # the input's pixel order
        np.testing.assert_allclose(np.sort(matched[..., channel], axis=None),
                                   np.sort(reference[..., channel], axis=None), atol=1)
        order = np.argsort(grey[..., 0], axis=None)
        assert np.all(np.diff(matched[..., channel].ravel()[order].astype(int)) >= 0)
    with pytest.raises(ValueError, match="reference image must be"):
        match_colour_histograms(grey, reference[..., 0])
    with pytest.raises(ValueError, match="image must be uint8"):
        match_colour_histograms(grey.astype(np.float32), reference)


def test_same_modality_pair_modalities_and_errors(tiny_weights):
    from stereo_depth_ros.models.cross_modal import PAIR_MODALITIES, match_colour_histograms, same_modality_pair

    to_rgb = create_estimator("cyclegan-nir-to-rgb", weights=str(tiny_weights["nir-to-rgb"]), backend="torch")
    to_nir = create_estimator("cyclegan-rgb-to-nir", weights=str(tiny_weights["rgb-to-nir"]), backend="torch")
    rgb = textured(40, 56, seed=1)
    nir = cv2.cvtColor(textured(40, 56, seed=2), cv2.COLOR_BGR2GRAY)
    pairs = {modality: same_modality_pair(nir, rgb, modality, to_rgb, to_nir) for modality in PAIR_MODALITIES}
    pseudo = to_rgb.translate(nir)
    np.testing.assert_array_equal(pairs["pseudo-rgb"][0], pseudo)
    np.testing.assert_array_equal(pairs["pseudo-rgb-matched"][0], match_colour_histograms(pseudo, rgb))
    assert not np.array_equal(pairs["pseudo-rgb"][0], pairs["pseudo-rgb-matched"][0])
    for modality in ("pseudo-rgb", "pseudo-rgb-matched"):
        assert pairs[modality][1] is rgb  # the RGB view as it is
    np.testing.assert_array_equal(pairs["pseudo-nir"][0], np.repeat(nir[..., None], 3, axis=2))
    np.testing.assert_array_equal(pairs["pseudo-nir"][1], to_nir.translate(rgb))
    assert same_modality_pair(nir.astype(np.uint16) * 257, rgb, "pseudo-nir", to_nir=to_nir)[0].shape == (40, 56, 3)
    with pytest.raises(ValueError, match="unknown NIR/RGB pair modality 'rgb'"):
        same_modality_pair(nir, rgb, "rgb", to_rgb, to_nir)
    with pytest.raises(ValueError, match="needs the rgb-to-nir estimator"):
        same_modality_pair(nir, rgb, "pseudo-nir", to_rgb)
    with pytest.raises(ValueError, match="differ in size: 56 x 40 vs 50 x 40"):
        same_modality_pair(nir, rgb[:, :50], "pseudo-rgb", to_rgb)


def test_shifted_real_pairs_have_the_shift_as_disparity(tmp_path):
    from stereo_depth_ros.data.nir_rgb import shifted_real_pairs

    rgb = textured(48, 80, seed=4)
    cv2.imwrite(str(tmp_path / "0000_rgb.png"), rgb)
    cv2.imwrite(str(tmp_path / "0000_nir.png"), cv2.cvtColor(rgb, cv2.COLOR_BGR2GRAY))
    np.save(tmp_path / "0000_nir.npy", np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    (pair,) = shifted_real_pairs(tmp_path, 8, short_side=None)
    assert pair["nir"].shape == (48, 72) and pair["right_rgb"].shape == (48, 72, 3)
    # left column x is right column x - 8: the right view shows the left view's content 8 px further left
    np.testing.assert_array_equal(pair["right_rgb"][:, :64], pair["left_rgb"][:, 8:72])
    np.testing.assert_array_equal(pair["left_rgb"], rgb[:, :72])
    gt = pair["gt_disparity"]
    assert np.isnan(gt[:, :8]).all() and np.all(gt[1:-1, 9:-1] == 8.0)
    (aligned,) = shifted_real_pairs(tmp_path, 8, short_side=None, pixel_aligned=True)
    np.testing.assert_array_equal(aligned["left_rgb"], pair["left_rgb"])
    with pytest.raises(ValueError, match="less than half the width"):
        shifted_real_pairs(tmp_path, 40, short_side=None)
    with pytest.raises(ValueError, match="shift must be a positive integer"):
        shifted_real_pairs(tmp_path, 0, short_side=None)


def test_eval_cross_spectral_json_has_every_pair_kind(shared_data, tiny_weights):
    from stereo_depth_ros.cli import main

    indoor = shared_data / "nir_rgb" / "indoor"
    if not indoor.is_dir():
        pytest.skip(f"NIR/RGB pairs {indoor} are absent")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["eval-cross-spectral", "--sets", "middlebury2003-cones", "--real-nir", str(indoor), "--limit",
                     "1", "--nir-weights", str(tiny_weights["rgb-to-nir"]), "--rgb-weights",
                     str(tiny_weights["nir-to-rgb"]), "--json"])
    assert code == 0
    document = json.loads(out.getvalue())
    assert list(document) == ["rows"]
    assert [row["set"] for row in document["rows"]] == ["middlebury2003-cones", "all", "indoor-shift16"]
    keys = ["nir_rgb", "nir_matched_rgb", "pseudo_rgb_rgb", "pseudo_rgb_matched_rgb", "nir_pseudo_nir", "rgb_rgb"]
    for row in document["rows"]:
        assert list(row) == (["set", "pairs"] + [f"epe_px_{key}" for key in keys]
                             + [f"density_pct_{key}" for key in keys]) and row["pairs"] == 1
        assert all(0 <= row[f"epe_px_{key}"] < 300 for key in keys)
        assert all(0 < row[f"density_pct_{key}"] <= 100.0 for key in keys)
        assert row["density_pct_rgb_rgb"] == 100.0  # the network gives a disparity everywhere on a real pair
    # the real pair's right view is its own RGB shifted: the upper bound is near the exact 16 px
    assert document["rows"][2]["epe_px_rgb_rgb"] < 1.0
    # --confidence-threshold drops the least confident pixels, as the node's parameter does
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["eval-cross-spectral", "--sets", "--real-nir", str(indoor), "--limit", "1", "--nir-weights",
                     str(tiny_weights["rgb-to-nir"]), "--rgb-weights", str(tiny_weights["nir-to-rgb"]),
                     "--confidence-threshold", "0.9", "--json"]) == 0
    (strict,) = json.loads(out.getvalue())["rows"]
    assert strict["set"] == "indoor-shift16"
    assert all(strict[f"density_pct_{key}"] <= document["rows"][2][f"density_pct_{key}"] for key in keys)
    assert 0 < strict["density_pct_rgb_rgb"] < 100.0


def test_eval_cross_spectral_refuses_bad_options():
    from stereo_depth_ros.commands.cross_modal import evaluate_cross_spectral

    with pytest.raises(ValueError, match="needs the coarse-to-fine network"):
        evaluate_cross_spectral([], method="sgbm", confidence_threshold=0.5)
    with pytest.raises(ValueError, match="must be in \\[0, 1\\]"):
        evaluate_cross_spectral([], confidence_threshold=1.5)
    with pytest.raises(ValueError, match="unknown stereo method 'bm'"):
        evaluate_cross_spectral([], method="bm")
