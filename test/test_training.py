"""Self-supervised training: it lowers the loss on real pairs, is deterministic, resumes, writes its logs."""

import csv
import json
from pathlib import Path

import pytest
import torch

from stereo_depth_ros.data.stereo_folder import StereoFolderDataset
from stereo_depth_ros.losses import PhotometricLossConfig, self_supervised_stereo_loss
from stereo_depth_ros.models.coarse_to_fine import CoarseToFineStereoNet, load_weights, save_weights
from stereo_depth_ros.training.stereo_trainer import (TrainStereoOptions, average_weights, freeze_stages_before,
                                                      initial_model, train_stereo)


@pytest.fixture()
def two_real_pairs(shared_data, tmp_path) -> Path:
    """A left/ right/ folder with links to two real in-vivo pairs of BDIS set 6 (nothing is copied)."""
    source = shared_data / "endoscopic_stereo" / "bdis_invivo" / "6" / "images_rectified"
    for side in ("left", "right"):
        (tmp_path / "pairs" / side).mkdir(parents=True)
        for name in ("1.png", "51.png"):
            (tmp_path / "pairs" / side / name).symlink_to(source / side / name)
    return tmp_path / "pairs"


def _loss_on_fixed_crops(weights: Path, folder: Path) -> float:
    model = load_weights(weights).eval()
    dataset = StereoFolderDataset(folder)
    total = 0.0
    with torch.no_grad():
        for item in (dataset[0], dataset[1]):
            left = item["left"][None, :, 100:356, 100:420]
            right = item["right"][None, :, 100:356, 100:420]
            total += self_supervised_stereo_loss(left, right, model(left, right),
                                                 config=PhotometricLossConfig()).total.item()
    return total / 2


def _options(folder: Path, out: Path, steps: int, **kwargs) -> TrainStereoOptions:
    defaults = dict(data=[str(folder)], out=str(out), steps=steps, batch_size=2, crop=(96, 128), lr=2e-3,
                    seed=3, checkpoint_every=2, max_disparity=64, progress=False, device="cpu")
    defaults.update(kwargs)
    return TrainStereoOptions(**defaults)


def test_short_training_on_two_real_pairs_lowers_the_loss(two_real_pairs, tmp_path):
    untrained = tmp_path / "untrained.safetensors"
    train_stereo(_options(two_real_pairs, untrained, steps=1, lr=0.0))
    trained = tmp_path / "trained.safetensors"
    card = train_stereo(_options(two_real_pairs, trained, steps=60, crop=(192, 256), disparity_shift=(-4, 2),
                                 checkpoint_every=20))  # every checkpoint redraws the PNG: 0.5 s on a busy core
    before, after = _loss_on_fixed_crops(untrained, two_real_pairs), _loss_on_fixed_crops(trained, two_real_pairs)
    assert after < 0.9 * before, f"loss {before:.4f} -> {after:.4f}"
    # Logs and model card beside the weights.
    rows = list(csv.DictReader(trained.with_name("trained.losses.csv").open()))
    assert len(rows) == 60 and {"stage0", "stage3", "total"} <= set(rows[0])
    assert trained.with_name("trained.losses.png").stat().st_size > 5000
    written = json.loads(trained.with_suffix(".json").read_text())
    assert written["steps"] == 60 and written["ground_truth_used"] is False and card["final_losses"]["total"] > 0
    assert written["disparity_shift"] == [-4, 2]


def test_training_is_deterministic_and_resumes_exactly(two_real_pairs, tmp_path):
    first, second, resumed = (tmp_path / f"{n}.safetensors" for n in ("a", "b", "c"))
    train_stereo(_options(two_real_pairs, first, steps=4, keep_weights=True))
    train_stereo(_options(two_real_pairs, second, steps=4))
    # keep_weights writes the weights of every checkpoint (every 2 steps here); the last one is the run's weights.
    assert sorted(p.name for p in tmp_path.glob("a.step*.safetensors")) == ["a.step000002.safetensors",
                                                                           "a.step000004.safetensors"]
    assert not list(tmp_path.glob("b.step*"))
    for key, value in load_weights(tmp_path / "a.step000004.safetensors").state_dict().items():
        torch.testing.assert_close(value, load_weights(first).state_dict()[key])
    train_stereo(_options(two_real_pairs, resumed, steps=4, stop_at=2))
    # Resume the run stopped after 2 of 4 steps from its checkpoint.
    train_stereo(_options(two_real_pairs, resumed, steps=4,
                          resume=str(resumed.with_name("c.ckpt.safetensors"))))
    a, b, c = (load_weights(p).state_dict() for p in (first, second, resumed))
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=f"{key} differs between two runs with one seed")
    for key in a:
        torch.testing.assert_close(a[key], c[key], atol=1e-5, rtol=1e-4,
                                   msg=f"{key} differs after resuming")


def test_train_stereo_command_rejects_bad_options(tmp_path, capsys):
    from stereo_depth_ros.cli import main

    assert main(["train-stereo", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "w.safetensors"),
                 "--steps", "1"]) == 2
    assert "nothing" in capsys.readouterr().err
    assert main(["train-stereo", "--data", str(tmp_path), "--out", str(tmp_path / "w.safetensors"),
                 "--disparity-shift", "4", "-4"]) == 2
    assert "shift_range" in capsys.readouterr().err
    assert main(["train-stereo", "--data", str(tmp_path), "--out", str(tmp_path / "w.safetensors"),
                 "--smoothness-weight", "0.1", "0.2"]) == 2
    assert "--smoothness-weight takes one value or four" in capsys.readouterr().err
    assert main(["train-stereo", "--data", str(tmp_path), "--out", str(tmp_path / "w.safetensors"),
                 "--first-trained-stage", "2"]) == 2
    assert "--init" in capsys.readouterr().err
    assert main(["train-stereo", "--data", str(tmp_path), "--out", str(tmp_path / "w.safetensors"),
                 "--cost-layers", "3", "0", "1"]) == 2
    assert "--cost-layers must be at least 1" in capsys.readouterr().err


def test_fine_tuning_from_stage_2_leaves_stages_0_and_1_exactly_as_they_were(two_real_pairs, tmp_path):
    start = tmp_path / "start.safetensors"
    train_stereo(_options(two_real_pairs, start, steps=2))
    tuned = tmp_path / "tuned.safetensors"
    card = train_stereo(_options(two_real_pairs, tuned, steps=3, init=str(start), first_trained_stage=2,
                                 smoothness_weight=(0.01, 0.01, 0.2, 0.2)))
    assert card["options"]["first_trained_stage"] == 2
    before, after = load_weights(start), load_weights(tuned)
    changed = {key for key, value in after.state_dict().items() if not torch.equal(value, before.state_dict()[key])}
    assert changed, "the stages from 2 on did not train"
    assert all(key.startswith(("features.up4", "features.head4", "regularizers.2", "refinement"))
               for key in changed), sorted(changed)  # weights and batch-norm statistics of stages 0, 1 kept
    pair = StereoFolderDataset(two_real_pairs)[0]
    left, right = pair["left"][None, :, :128, :160], pair["right"][None, :, :128, :160]
    with torch.no_grad():
        old, new = before(left, right), after(left, right)
    for stage in (0, 1):
        assert torch.equal(old[stage], new[stage])
    assert not torch.equal(old[3], new[3])


def test_freeze_stages_before_returns_the_trainable_parameters_and_checks_the_stage():
    model = CoarseToFineStereoNet(max_disparity=32).train()
    trainable = freeze_stages_before(model, 3)
    assert {id(p) for p in trainable} == {id(p) for p in model.refinement.parameters()}
    assert not model.features.down1.training and model.refinement.training
    assert len(freeze_stages_before(CoarseToFineStereoNet(max_disparity=32), 0)) == len(list(model.parameters()))
    with pytest.raises(ValueError, match="0..3"):
        freeze_stages_before(model, 4)
    with pytest.raises(ValueError, match="stage must be"):
        model.stage_modules(-1)


def test_initial_model_adds_cost_layers_to_trained_stages_only(tmp_path):
    torch.manual_seed(0)
    start = CoarseToFineStereoNet(max_disparity=32, refine_channels=8)
    save_weights(start, tmp_path / "start.safetensors")
    options = TrainStereoOptions(data=[], out=str(tmp_path / "out.safetensors"), max_disparity=48,
                                 init=str(tmp_path / "start.safetensors"), first_trained_stage=2,
                                 cost_layers=(3, 2, 2))
    model = initial_model(options)
    # The init's configuration is kept (refine_channels 8), with the requested layers and search range.
    assert model.config["refine_channels"] == 8 and model.config["cost_layers"] == [3, 2, 2]
    assert model.max_disparity == 48
    new = [key for key in model.state_dict() if key not in start.state_dict()]
    assert new and all(key.startswith("regularizers.2.body.1.") for key in new)
    for key, value in start.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    # Without init the layers apply to a random network; a new layer in a frozen stage is refused.
    fresh = initial_model(TrainStereoOptions(data=[], out="unused", cost_layers=(2, 2, 2)))
    assert fresh.config["cost_layers"] == [2, 2, 2]
    with pytest.raises(ValueError, match="frozen stage"):
        initial_model(TrainStereoOptions(data=[], out="unused", init=str(tmp_path / "start.safetensors"),
                                         first_trained_stage=2, cost_layers=(3, 3, 1)))


def test_initial_model_swaps_in_a_cost_volume_stage_3_and_keeps_stages_0_to_2(tmp_path):
    torch.manual_seed(0)
    start = CoarseToFineStereoNet(max_disparity=32)
    save_weights(start, tmp_path / "start.safetensors")
    options = TrainStereoOptions(data=[], out="unused", max_disparity=32, init=str(tmp_path / "start.safetensors"),
                                 first_trained_stage=3, stage3="cost-volume")
    model = initial_model(options)
    assert model.config["stage3"] == "cost-volume" and model.refinement is None
    new = [key for key in model.state_dict() if key not in start.state_dict()]
    assert new and all(key.startswith("regularizers.3.") for key in new)
    for key, value in model.state_dict().items():
        if key not in new:
            assert torch.equal(value, start.state_dict()[key]), key
    trainable = freeze_stages_before(model, 3)
    assert {id(p) for p in trainable} == {id(p) for p in model.regularizers[3].parameters()}
    # the other way round: a cost-volume init keeps its design unless --stage3 says otherwise
    save_weights(model, tmp_path / "volume.safetensors")
    again = initial_model(TrainStereoOptions(data=[], out="unused", init=str(tmp_path / "volume.safetensors")))
    assert again.config.get("stage3") == "cost-volume"


def test_average_weights_is_the_mean_of_every_float_tensor(tmp_path, capsys):
    from stereo_depth_ros.cli import main

    paths = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = CoarseToFineStereoNet(max_disparity=32)
        for module in model.modules():  # distinct batch-norm statistics and counters per file
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.num_batches_tracked.fill_(10 * (seed + 1))
        paths.append(tmp_path / f"w{seed}.safetensors")
        save_weights(model, paths[-1])
    assert main(["average-weights", *map(str, paths), "--out", str(tmp_path / "mean.safetensors")]) == 0, \
        capsys.readouterr().err
    states = [load_weights(p).state_dict() for p in paths]
    averaged = load_weights(tmp_path / "mean.safetensors").state_dict()
    for key, value in averaged.items():
        if value.dtype.is_floating_point:
            torch.testing.assert_close(value, sum(s[key] for s in states) / 3, atol=1e-6, rtol=1e-5)
        else:
            assert torch.equal(value, states[-1][key])
    assert not torch.equal(averaged["features.down1.0.weight"], states[0]["features.down1.0.weight"])
    from safetensors import safe_open

    with safe_open(str(tmp_path / "mean.safetensors"), framework="pt") as handle:
        assert json.loads(handle.metadata()["averaged_from"]) == [p.name for p in paths]
    # Another configuration cannot be averaged in; no file is no average.
    save_weights(CoarseToFineStereoNet(max_disparity=32, refine_channels=8), tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="configuration"):
        average_weights([paths[0], tmp_path / "other.safetensors"], tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="at least one"):
        average_weights([], tmp_path / "bad.safetensors")


def test_cross_spectral_left_renders_chosen_items_as_one_random_band():
    from stereo_depth_ros.training.stereo_trainer import cross_spectral_left

    left = torch.rand(64, 3, 6, 7)
    out = cross_spectral_left(left, 0.5, torch.Generator().manual_seed(1))
    grey = torch.tensor([torch.equal(item[0], item[1]) and torch.equal(item[1], item[2]) for item in out])
    unchanged = torch.tensor([torch.equal(a, b) for a, b in zip(out, left)])
    assert bool((grey ^ unchanged).all())  # each item is either a grey rendering or the input itself
    assert 16 < int(grey.sum()) < 48  # about half of the items
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    # the rendering is a monotonic tone curve of a positive channel mix: pixel order of a grey input is kept
    ramp = torch.linspace(0.05, 0.95, 30).view(1, 1, 1, 30).expand(4, 3, 2, 30).contiguous()
    rendered = cross_spectral_left(ramp, 1.0, torch.Generator().manual_seed(2))
    assert bool((rendered[:, 0, 0].diff(dim=-1) >= 0).all())
    assert not torch.allclose(rendered[0], rendered[1])  # each item draws its own response
    again = cross_spectral_left(left, 0.5, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)  # repeatable with a seed
    assert cross_spectral_left(left, 0.0) is left
    with pytest.raises(ValueError, match="probability must be in \\[0, 1\\]"):
        cross_spectral_left(left, 1.5)
    with pytest.raises(ValueError, match="must be \\(B, 3, H, W\\)"):
        cross_spectral_left(left[:, :1], 0.5)


def test_cross_spectral_training_records_the_option(two_real_pairs, tmp_path):
    plain, spectral = tmp_path / "plain.safetensors", tmp_path / "spectral.safetensors"
    train_stereo(_options(two_real_pairs, plain, steps=2))
    card = train_stereo(_options(two_real_pairs, spectral, steps=2, cross_spectral=1.0))
    assert card["options"]["cross_spectral"] == 1.0
    a, b = load_weights(plain).state_dict(), load_weights(spectral).state_dict()
    assert any(not torch.equal(a[key], b[key]) for key in a)  # the network saw other inputs
    with pytest.raises(ValueError, match="cross_spectral must be a probability"):
        train_stereo(_options(two_real_pairs, tmp_path / "bad.safetensors", steps=1, cross_spectral=-0.1))


def test_packaged_cross_spectral_weights_match_their_card():
    import hashlib

    from stereo_depth_ros.models.registry import WEIGHTS_DIR

    path = WEIGHTS_DIR / "coarse_to_fine_cross_spectral.safetensors"
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["file"] == path.name and card["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert card["ground_truth_used"] is False and card["training"]["cross_spectral"] == 0.5
    assert path.stat().st_size < 5 * 1024 * 1024
    model = load_weights(path)
    assert isinstance(model, CoarseToFineStereoNet) and model.config == load_weights(
        WEIGHTS_DIR / "coarse_to_fine_stereo.safetensors").config  # the stereo network, fine-tuned
    chosen = card["selection"]["step100"]
    others = [card["selection"][key] for key in ("packaged_stereo_weights", "step300", "step600")]
    assert all(chosen[key] < other[key] for other in others for key in chosen)  # the best on both validation sets
