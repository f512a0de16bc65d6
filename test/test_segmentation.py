"""Instrument segmentation (issue 13): SPP-LinkNet-34 heads, the Jaccard loss, IoU/Dice, a short training, the set
loaders' codings, ``eval-seg --json`` and the colour-threshold baseline. The ROS node and the fusion are in
test_segmentation_node.py."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from stereo_depth_ros import cli
from stereo_depth_ros.data.segmentation_sets import IGNORE, PART_MANIPULATOR, SegmentationDataset, detect_layout
from stereo_depth_ros.evaluation.colour_threshold import ColourThresholdParameters, colour_threshold_mask
from stereo_depth_ros.evaluation.segmentation_metrics import iou_dice, multiclass_iou_dice, summarise
from stereo_depth_ros.losses import binary_segmentation_loss, multiclass_segmentation_loss, soft_jaccard
from stereo_depth_ros.models.registry import model_names, model_spec
from stereo_depth_ros.models.segmentation import (TASK_CHANNELS, SegmentationEstimator, SPPLinkNet, load_weights,
                                                  save_weights, working_size)
from stereo_depth_ros.models.weights import WeightsError
from stereo_depth_ros.training.segmentation_trainer import TrainSegmentationOptions, train_segmentation


def tiny_network(**options) -> SPPLinkNet:
    torch.manual_seed(0)
    return SPPLinkNet(base_width=8, **options).eval()


def synthetic_frame(height=96, width=128, seed=0):
    """Red 'tissue' with noise and a grey 'instrument' bar: (image BGR uint8, mask 0/1 uint8)."""
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), np.uint8)
    image[:] = (60, 70, 190)
    image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((height, width), np.uint8)
    top = int(rng.integers(0, height // 2))
    left = int(rng.integers(0, width // 2))
    mask[top:top + height // 3, left:left + width // 2] = 1
    grey = np.clip(150 + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
    image[mask == 1] = grey[mask == 1]
    return image, mask


# Network ------------------------------------------------------------------------------------------------------


def test_every_head_has_its_classes_at_the_input_size():
    network = tiny_network()
    outputs = network(torch.rand(2, 3, 64, 96))
    assert [tuple(o.shape) for o in outputs] == [(2, TASK_CHANNELS[t], 64, 96) for t in ("binary", "parts", "type")]
    assert TASK_CHANNELS == {"binary": 1, "parts": 4, "type": 8}


def test_the_encoder_is_resnet18_deep_with_a_7x7_stem_and_spp():
    network = tiny_network()
    assert network.encoder.stem[0].kernel_size == (7, 7)
    assert [len(stage) for stage in network.encoder.stages] == [2, 2, 2, 2]
    assert network.spp.pool_sizes == (3, 5, 9)


def test_bad_inputs_are_refused():
    network = tiny_network()
    with pytest.raises(ValueError, match="multiples of 32"):
        network(torch.rand(1, 3, 60, 96))
    with pytest.raises(ValueError, match="tasks"):
        SPPLinkNet(tasks=("depth",))


def test_weights_round_trip_and_estimator_outputs(tmp_path):
    network = tiny_network(tasks=("binary", "parts"))
    path = tmp_path / "seg.safetensors"
    save_weights(network, path)
    loaded = load_weights(path)
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(network(image)[1], loaded(image)[1])
    frame, _ = synthetic_frame(90, 120)
    estimator = SegmentationEstimator(weights=path, backend="torch", working_height=64)
    result = estimator.predict(frame)
    assert result["mask"].shape == (90, 120) and result["mask"].dtype == np.uint8
    assert result["probability"].dtype == np.float32
    assert set(np.unique(result["mask"])) <= {0, 1}
    assert 0.0 <= result["probability"].min() and result["probability"].max() <= 1.0
    np.testing.assert_array_equal(result["mask"], (result["probability"] >= 0.5).astype(np.uint8))
    parts = SegmentationEstimator(weights=path, task="parts", backend="torch", working_height=64).predict(frame)
    assert parts["mask"].max() <= 3
    with pytest.raises(ValueError, match="heads"):
        SegmentationEstimator(weights=path, task="type", backend="torch")
    with pytest.raises(ValueError, match="uint8"):
        estimator.predict(frame.astype(np.float32))
    with pytest.raises(WeightsError):
        SegmentationEstimator(weights=tmp_path / "missing.safetensors")


def test_onnx_and_torch_backends_agree(tmp_path):
    pytest.importorskip("onnxruntime")
    network = tiny_network(tasks=("binary",))
    frame, _ = synthetic_frame(96, 128)
    torch_probability = SegmentationEstimator(model=network, backend="torch", working_height=64).predict(frame)
    onnx_probability = SegmentationEstimator(model=network, backend="onnx", working_height=64,
                                             cache_dir=tmp_path).predict(frame)
    assert np.abs(torch_probability["probability"] - onnx_probability["probability"]).max() < 1e-4


def test_registry_entries():
    assert {"spp-linknet", "spp-linknet-parts", "spp-linknet-type"} <= set(model_names("image"))
    spec = model_spec("spp-linknet")
    assert spec.family == "segmentation" and spec.output_kinds == ("mask",) and spec.input_kind == "image"
    assert working_size(1024, 1280, 256) == (256, 320)


# Loss and metrics ---------------------------------------------------------------------------------------------


def test_soft_jaccard_hand_example():
    probability = torch.tensor([0.8, 0.6, 0.0, 0.3])
    truth = torch.tensor([1.0, 1.0, 0.0, 0.0])
    # intersection 1.4, sum p 1.7, sum t 2 -> union 2.3
    assert float(soft_jaccard(probability, truth, torch.ones(4))) == pytest.approx(1.4 / 2.3, abs=1e-5)
    # the last pixel left out: union 2.0
    assert float(soft_jaccard(probability, truth, torch.tensor([1.0, 1, 1, 0]))) == pytest.approx(0.7, abs=1e-5)


def test_binary_loss_is_bce_minus_log_jaccard_and_ignores_255():
    logits = torch.tensor([[[[2.0, -1.0], [0.5, 3.0]]]])
    target = torch.tensor([[[1, 0], [IGNORE, 1]]])
    valid = torch.tensor([True, True, False, True])
    p = torch.sigmoid(logits.flatten())
    t = torch.tensor([1.0, 0.0, 0.0, 1.0])
    bce = -(t * torch.log(p) + (1 - t) * torch.log(1 - p))[valid].mean()
    intersection = (p * t)[valid].sum()
    jaccard = (intersection + 1) / (p[valid].sum() + t[valid].sum() - intersection + 1)  # smoothing 1 pixel
    expected = bce - torch.log(jaccard)
    assert float(binary_segmentation_loss(logits, target)) == pytest.approx(float(expected), abs=1e-5)
    assert float(binary_segmentation_loss(logits, target, jaccard_weight=0)) == pytest.approx(float(bce), abs=1e-6)
    with pytest.raises(ValueError, match="0, 1"):
        binary_segmentation_loss(logits, torch.tensor([[[1, 2], [0, 1]]]))


def test_a_set_label_accepts_either_member_class():
    target = torch.full((1, 1, 1), PART_MANIPULATOR)
    wrist = torch.tensor([0.0, 0.0, 5.0, 0.0])[None, :, None, None]
    claspers = torch.tensor([0.0, 0.0, 0.0, 5.0])[None, :, None, None]
    shaft = torch.tensor([0.0, 5.0, 0.0, 0.0])[None, :, None, None]
    losses = [float(multiclass_segmentation_loss(x, target, 0.0, {PART_MANIPULATOR: (2, 3)}))
              for x in (wrist, claspers, shaft)]
    assert losses[0] == pytest.approx(losses[1]) and losses[0] < 0.05 < losses[2]
    with pytest.raises(ValueError, match="set labels"):
        multiclass_segmentation_loss(shaft, target, 0.0)


def test_iou_and_dice_hand_examples_with_empty_masks():
    truth = np.array([[1, 1, 0, 0]], bool)
    assert iou_dice(np.array([[1, 0, 1, 0]], bool), truth) == (pytest.approx(1 / 3), pytest.approx(0.5))
    assert iou_dice(truth, truth) == (1.0, 1.0)
    empty = np.zeros((2, 2), bool)
    assert iou_dice(empty, empty) == (1.0, 1.0)  # nothing to find, nothing found
    assert iou_dice(np.ones((2, 2), bool), empty) == (0.0, 0.0)  # false alarm on an empty frame
    assert iou_dice(empty, np.ones((2, 2), bool)) == (0.0, 0.0)
    # pixels without a label do not count
    valid = np.array([[True, True, False, False]])
    assert iou_dice(np.array([[1, 1, 1, 1]], bool), truth, valid) == (1.0, 1.0)
    assert multiclass_iou_dice(np.zeros((2, 2), int), np.zeros((2, 2), int), 4) == (1.0, 1.0)
    iou, dice = multiclass_iou_dice(np.array([[1, 2]]), np.array([[1, 1]]), 3)
    assert iou == pytest.approx(0.25) and dice == pytest.approx(1 / 3)
    summary = summarise([(1.0, 1.0), (0.0, 0.0)])
    assert (summary.iou_mean, summary.iou_std, summary.images) == (0.5, 0.5, 2)


def test_colour_threshold_finds_grey_on_red():
    image, mask = synthetic_frame()
    predicted = colour_threshold_mask(image, ColourThresholdParameters(saturation_max=60, kernel_px=9))
    assert iou_dice(predicted.astype(bool), mask.astype(bool))[0] > 0.9
    with pytest.raises(ValueError, match="value_min"):
        ColourThresholdParameters(value_min=200, value_max=100)


# Training -----------------------------------------------------------------------------------------------------


def write_endovis2015_layout(folder: Path, frames: int = 6) -> Path:
    for sub in ("images", "masks", "masks_parts"):
        (folder / sub).mkdir(parents=True)
    for index in range(frames):
        image, mask = synthetic_frame(96, 128, seed=index)
        parts = np.where(mask == 1, 160, 0).astype(np.uint8)
        parts[:, :20][mask[:, :20] == 1] = 70
        cv2.imwrite(str(folder / "images" / f"OP{1 + index % 2}_img_{index:02d}.png"), image)
        cv2.imwrite(str(folder / "masks" / f"OP{1 + index % 2}_img_{index:02d}.png"), mask * 255)
        cv2.imwrite(str(folder / "masks_parts" / f"OP{1 + index % 2}_img_{index:02d}.png"), parts)
    return folder


def test_a_short_training_lowers_the_loss(tmp_path):
    data = write_endovis2015_layout(tmp_path / "endovis2015_rigid")
    out = tmp_path / "run" / "seg.safetensors"
    options = TrainSegmentationOptions(data=[str(data)], out=str(out), validation_groups=["endovis2015_rigid/OP2"],
                                       steps=30, batch_size=4, crop=(64, 64), working_height=64, lr=5e-3,
                                       base_width=8, tasks=("binary", "parts"), checkpoint_every=15, threads=1,
                                       device="cpu", progress=False)
    card = train_segmentation(options)
    losses = [float(line.split(",")[1]) for line in (tmp_path / "run" / "seg.losses.csv").read_text().splitlines()[1:]]
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    assert card["selected_step"] in (15, 30) and card["data"]["validation_images"] == 3
    assert load_weights(out).tasks == ("binary", "parts")


# Sets ---------------------------------------------------------------------------------------------------------


def test_synthetic_layout_codings_and_groups(tmp_path):
    data = write_endovis2015_layout(tmp_path / "endovis2015_rigid")
    assert detect_layout(data) == "endovis2015"
    dataset = SegmentationDataset(data, groups_exclude=["endovis2015_rigid/OP2"])
    assert len(dataset.samples) == 3
    sample = dataset.load_sample(0)
    assert set(np.unique(sample["parts"])) <= {0, 1, PART_MANIPULATOR}
    np.testing.assert_array_equal(sample["binary"], (sample["parts"] > 0).astype(np.uint8))
    assert np.all(sample["type"] == IGNORE)  # rigid: no type labels
    with pytest.raises(FileNotFoundError, match="layout"):
        detect_layout(tmp_path)


def test_real_set_codings(shared_data):
    root = shared_data / "segmentation"
    test = SegmentationDataset(root / "endoscapes_seg50", split="test")
    assert len(test.samples) == 74
    shifted = SegmentationDataset(root / "endoscapes_seg50", groups_include=["endoscapes_seg50/153"])
    index = [Path(s[0]).stem for s in shifted.samples].index("153_32700")
    raw = cv2.imread(str(shifted.samples[index][1]), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(shifted.load_sample(index)["binary"] == 1, raw == 7)
    parts = SegmentationDataset(root / "endovis2017_parts").load_sample(0)
    assert parts["image"].shape == (1024, 1280, 3) and set(np.unique(parts["parts"])) == {0, 1, 2, 3}
    dvrk = SegmentationDataset(root / "dvrk_phantom").load_sample(0)
    assert set(np.unique(dvrk["binary"])) == {0, 1, IGNORE}  # needle ignored
    types = SegmentationDataset(root / "endovis2018_types", groups_include=["endovis2018_types/seq_14"])
    assert len(types.samples) == 5 and types.load_sample(0)["type"].max() <= 7


# Command line -------------------------------------------------------------------------------------------------


def test_eval_seg_json_has_exactly_the_fields(tmp_path, capsys):
    image, mask = synthetic_frame(96, 128)
    cv2.imwrite(str(tmp_path / "frame.png"), image)
    cv2.imwrite(str(tmp_path / "mask.png"), mask * 255)
    weights = tmp_path / "seg.safetensors"
    save_weights(tiny_network(), weights)
    figure = tmp_path / "figure.png"
    code = cli.main(["eval-seg", "--image", str(tmp_path / "frame.png"), "--mask", str(tmp_path / "mask.png"),
                     "--model", "spp-linknet", "spp-linknet-parts", "--weights", str(weights), "--backend", "torch",
                     "--working-height", "64", "--figure", str(figure), "--json"])
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert list(document) == ["rows"]
    rows = document["rows"]
    assert {row["model"] for row in rows} == {"spp-linknet", "colour-threshold"}  # no parts truth: no parts row
    for row in rows:
        assert list(row) == ["model", "task", "iou", "dice", "runtime_ms"]
        assert row["task"] == "binary" and 0 <= row["iou"] <= row["dice"] <= 1 and row["runtime_ms"] > 0
    baseline = next(row for row in rows if row["model"] == "colour-threshold")
    assert baseline["iou"] > 0.8  # grey bar on red: the baseline's own case
    assert cv2.imread(str(figure)).shape[1] == 4 * 320


def test_eval_seg_names_a_bad_mask(tmp_path, capsys):
    image, _ = synthetic_frame(96, 128)
    cv2.imwrite(str(tmp_path / "frame.png"), image)
    cv2.imwrite(str(tmp_path / "mask.png"), np.zeros((50, 50), np.uint8))
    code = cli.main(["eval-seg", "--image", str(tmp_path / "frame.png"), "--mask", str(tmp_path / "mask.png"),
                     "--model", "spp-linknet", "--json"])
    assert code == 2 and "mask.png is 50x50" in capsys.readouterr().err


def test_endovis2017_challenge_layout_merges_instruments_and_crops(tmp_path):
    sequence = tmp_path / "endovis2017" / "instrument_dataset_1"
    (sequence / "left_frames").mkdir(parents=True)
    image = np.zeros((1080, 1920, 3), np.uint8)
    image[28:1052, 320:1600] = 90  # the camera image inside the black raw border
    cv2.imwrite(str(sequence / "left_frames" / "frame000.png"), image)
    left, right = np.zeros((1080, 1920), np.uint8), np.zeros((1080, 1920), np.uint8)
    left[100:200, 400:500] = 10   # shaft
    left[200:220, 400:500] = 30   # claspers
    right[500:600, 900:1000] = 20  # wrist
    for name, mask in (("Left_Prograsp_Forceps_labels", left), ("Right_Large_Needle_Driver_labels", right)):
        (sequence / "ground_truth" / name).mkdir(parents=True)
        cv2.imwrite(str(sequence / "ground_truth" / name / "frame000.png"), mask)
    dataset = SegmentationDataset(tmp_path / "endovis2017")
    assert detect_layout(tmp_path / "endovis2017") == "endovis2017" and len(dataset.samples) == 1
    assert dataset.group_of(dataset.samples[0][0]) == "endovis2017/instrument_dataset_1"
    sample = dataset.load_sample(0)
    assert sample["image"].shape == (1024, 1280, 3) and np.all(sample["image"] == 90)
    assert sample["parts"][100 - 28, 400 - 320] == 1 and sample["parts"][210 - 28, 450 - 320] == 3
    assert sample["parts"][550 - 28, 950 - 320] == 2 and sample["parts"][0, 0] == 0
    assert sample["type"][150 - 28, 450 - 320] == 2 and sample["type"][550 - 28, 950 - 320] == 3  # prograsp, LND
    assert int(sample["binary"].sum()) == 100 * 120 + 100 * 100


def test_eval_seg_dataset_on_a_folder(tmp_path, capsys):
    data = write_endovis2015_layout(tmp_path / "endovis2015_rigid", frames=2)
    weights = tmp_path / "seg.safetensors"
    save_weights(tiny_network(), weights)
    code = cli.main(["eval-seg-dataset", str(data), "--model", "spp-linknet", "spp-linknet-parts", "--weights",
                     str(weights), "--backend", "torch", "--working-height", "64", "--json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    keys = {(row["model"], row["task"], row["coding"]) for row in rows}
    assert keys == {("spp-linknet", "binary", "binary"), ("colour-threshold", "binary", "binary"),
                    ("spp-linknet-parts", "parts", "shaft/manipulator")}
    assert all(row["images"] == 2 and 0 <= row["iou"] <= 1 for row in rows)
    assert cli.main(["eval-seg-dataset", "no-such-set"]) == 2
