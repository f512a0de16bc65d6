"""The generic Trainer, without shared data: the stereo training smoke test on scikit-image's Motorcycle pair and a
two-model, two-optimiser toy (a CycleGAN's alternating updates in miniature)."""

import csv
import hashlib
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from stereo_depth_ros.models.coarse_to_fine import CoarseToFineStereoNet, load_weights
from stereo_depth_ros.models.weights import WeightsError
from stereo_depth_ros.training.model_card import write_model_card
from stereo_depth_ros.training.stereo_trainer import TrainStereoOptions, train_stereo
from stereo_depth_ros.training.trainer import (Trainer, TrainerOptions, average_state_dicts, kept_weights_files,
                                               recompute_batch_norm_statistics, seed_everything)

STEREO_COLUMNS = ["step", "total", "stage0", "stage1", "stage2", "stage3", "appearance3", "lr", "seconds"]


@pytest.fixture()
def motorcycle_folder(motorcycle_small, tmp_path) -> Path:
    """left/ and right/ with the quarter-size Motorcycle pair (125 x 185) as PNG files."""
    left, right, _ = motorcycle_small
    for side, image in (("left", left), ("right", right)):
        (tmp_path / "pairs" / side).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "pairs" / side / "0.png"), image)
    return tmp_path / "pairs"


def _stereo_options(folder: Path, out: Path, **kwargs) -> TrainStereoOptions:
    defaults = dict(data=[str(folder)], out=str(out), steps=4, batch_size=2, crop=(64, 96), lr=2e-3, seed=5,
                    checkpoint_every=2, max_disparity=32, progress=False, device="cpu")
    defaults.update(kwargs)
    return TrainStereoOptions(**defaults)


def _rows(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_stereo_training_smoke_logs_resumes_exactly_and_writes_a_checked_model_card(motorcycle_folder, tmp_path):
    out = tmp_path / "run.safetensors"
    card = train_stereo(_stereo_options(motorcycle_folder, out, keep_weights=True))
    # The losses are finite and logged under the callback's names (the stereo CSV columns of before the Trainer).
    rows = _rows(tmp_path / "run.losses.csv")
    assert list(rows[0]) == STEREO_COLUMNS and [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert all(math.isfinite(float(r[c])) and float(r[c]) > 0 for r in rows for c in STEREO_COLUMNS[1:7])
    assert float(rows[0]["lr"]) == pytest.approx(2e-3) and float(rows[-1]["lr"]) < float(rows[0]["lr"])
    assert (tmp_path / "run.losses.png").stat().st_size > 5000
    # The weights moved away from the seeded initialisation.
    seed_everything(5)
    initial = CoarseToFineStereoNet(max_disparity=32).state_dict()
    trained = load_weights(out).state_dict()
    assert not torch.equal(initial["refinement.body.0.0.weight"], trained["refinement.body.0.0.weight"])
    assert not torch.equal(initial["features.down1.0.weight"], trained["features.down1.0.weight"])
    # Stopped after 2 steps and resumed: exactly the weights and losses of the uninterrupted run.
    resumed = tmp_path / "resumed.safetensors"
    train_stereo(_stereo_options(motorcycle_folder, resumed, stop_at=2))
    assert len(_rows(tmp_path / "resumed.losses.csv")) == 2
    train_stereo(_stereo_options(motorcycle_folder, resumed, resume=str(tmp_path / "resumed.ckpt.safetensors")))
    for key, value in load_weights(resumed).state_dict().items():
        assert torch.equal(value, trained[key]), key
    for a, b in zip(_rows(tmp_path / "resumed.losses.csv"), rows, strict=True):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
    # Kept weights of steps 2 and 4; the last is the run's weights.
    kept = kept_weights_files(out)
    assert [step for step, _ in kept] == [2, 4]
    assert all(torch.equal(v, load_file(str(kept[-1][1]))[k]) for k, v in trained.items())
    # The model card records the file's SHA-256, which the loader checks.
    written = json.loads(out.with_suffix(".json").read_text())
    assert written == card and written["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert written["steps"] == 4 and written["ground_truth_used"] is False
    data = bytearray(out.read_bytes())
    data[-1] ^= 0xFF
    out.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="SHA-256"):
        load_weights(out)


def test_write_model_card_adds_the_sha256_and_refuses_what_json_cannot_hold(tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"not really weights")
    path = write_model_card(weights, {"loss": float("nan"), "steps": np.int64(3), "sha256": "stale"})
    assert path == tmp_path / "w.json"
    card = json.loads(path.read_text())
    assert card == {"loss": None, "steps": 3, "sha256": hashlib.sha256(b"not really weights").hexdigest()}
    with pytest.raises(TypeError, match="JSON"):
        write_model_card(weights, {"module": nn.Linear(1, 1)})
    with pytest.raises(WeightsError, match="does not exist"):
        write_model_card(tmp_path / "missing.safetensors", {})


# A CycleGAN in miniature: a generator maps domain A to domain B (a shift by +2), a discriminator tells real B from
# generated B; each has its own optimiser and scheduler, updated alternately inside one step.


class Vectors(torch.utils.data.Dataset):
    """Item k: ``a`` ~ N(0, 1) and ``b`` ~ N(2, 1), 4 values each, drawn from ``default_rng(k)``."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng(index)
        return {"a": torch.from_numpy(rng.normal(0, 1, 4).astype(np.float32)),
                "b": torch.from_numpy(rng.normal(2, 1, 4).astype(np.float32))}


def _toy_models() -> dict:
    seed_everything(11)
    generator = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.2))  # dropout: resuming must restore the RNG
    discriminator = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
    return {"generator": generator, "discriminator": discriminator}


def _toy_trainer(out: Path, updates: list, **kwargs) -> Trainer:
    models = _toy_models()
    optimizers = {name: torch.optim.Adam(module.parameters(), lr=1e-2) for name, module in models.items()}
    schedulers = {name: torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
                  for name, optimizer in optimizers.items()}
    bce = nn.BCEWithLogitsLoss()

    def loss(batch, trainer):
        generator, discriminator = trainer.models["generator"], trainer.models["discriminator"]
        fake = generator(batch["a"])
        real_score, fake_score = discriminator(batch["b"]), discriminator(fake.detach())
        discriminator_loss = bce(real_score, torch.ones_like(real_score)) + bce(fake_score,
                                                                                  torch.zeros_like(fake_score))
        before = [p.detach().clone() for p in generator.parameters()]
        trainer.update(discriminator_loss, "discriminator")
        updates.append(all(torch.equal(a, b) for a, b in zip(before, generator.parameters())))
        score = discriminator(fake)
        generator_loss = bce(score, torch.ones_like(score))
        before = [p.detach().clone() for p in discriminator.parameters()]
        trainer.update(generator_loss, "generator")
        updates.append(all(torch.equal(a, b) for a, b in zip(before, discriminator.parameters())))
        return {"generator": generator_loss, "discriminator": discriminator_loss}

    def validate(batch, trainer):
        return {"shift_error": (trainer.models["generator"](batch["a"]) - batch["a"] - 2).abs().mean()}

    options = dict(out=out, steps=6, batch_size=4, seed=2, checkpoint_every=2, backward=None, progress=False,
                   keep_weights=True, validate_every=3)
    options.update(kwargs)
    return Trainer(TrainerOptions(**options), models, optimizers, loss, Vectors(10), schedulers=schedulers,
                   validation_dataset=Vectors(6), validate=validate)


def test_two_models_with_two_optimisers_alternate_log_and_resume_exactly(tmp_path):
    updates = []
    trainer = _toy_trainer(tmp_path / "gan.safetensors", updates)
    initial = {name: {k: v.clone() for k, v in m.state_dict().items()} for name, m in trainer.models.items()}
    trainer.fit()
    # Each update moved its own model only.
    assert len(updates) == 12 and all(updates)
    for name, module in trainer.models.items():
        assert not torch.equal(initial[name]["0.weight"], module.state_dict()["0.weight"]), name
    rows = _rows(tmp_path / "gan.losses.csv")
    assert list(rows[0]) == ["step", "generator", "discriminator", "lr_generator", "lr_discriminator", "seconds"]
    assert [float(r["lr_generator"]) for r in rows] == pytest.approx([1e-2, 1e-2, 5e-3, 5e-3, 2.5e-3, 2.5e-3])
    assert all(math.isfinite(float(r["generator"])) for r in rows)
    validation = _rows(tmp_path / "gan.validation.csv")
    assert list(validation[0]) == ["step", "shift_error"] and [int(r["step"]) for r in validation] == [3, 6]
    assert (tmp_path / "gan.losses.png").stat().st_size > 5000
    final = {name: load_file(str(tmp_path / f"gan.{name}.safetensors")) for name in trainer.models}
    # A run stopped after step 3 (a validation pass, a checkpoint) and resumed gives exactly the same weights.
    stopped = _toy_trainer(tmp_path / "again.safetensors", [], stop_at=3)
    stopped.fit()
    resumed = _toy_trainer(tmp_path / "again.safetensors", [])
    resumed.fit(resume=tmp_path / "again.ckpt.safetensors")
    for name in trainer.models:
        again = load_file(str(tmp_path / f"again.{name}.safetensors"))
        for key, value in final[name].items():
            assert torch.equal(value, again[key]), f"{name}.{key}"
    assert [r["generator"] for r in _rows(tmp_path / "again.losses.csv")] == [r["generator"] for r in rows]
    assert resumed.learning_rates() == trainer.learning_rates()


def test_checkpoint_averaging_is_the_mean_and_can_remeasure_batch_norm(tmp_path):
    trainer = _toy_trainer(tmp_path / "gan.safetensors", [])
    trainer.fit()
    kept = kept_weights_files(tmp_path / "gan.safetensors", "discriminator", 4, 6)
    assert [step for step, _ in kept] == [4, 6]
    averaged = trainer.average_checkpoints("discriminator", first_step=4, last_step=6)
    states = [load_file(str(path)) for _, path in kept]
    for key, value in averaged.state_dict().items():
        if value.dtype.is_floating_point:
            torch.testing.assert_close(value, (states[0][key] + states[1][key]) / 2, rtol=0, atol=1e-7)
        else:  # the batch-norm step counter of the last checkpoint
            assert torch.equal(value, states[1][key])
    assert not torch.equal(averaged.state_dict()["0.weight"], states[1]["0.weight"])
    with safe_open(str(tmp_path / "gan.discriminator.average.safetensors"), framework="pt") as handle:
        assert json.loads(handle.metadata()["averaged_from"]) == [path.name for _, path in kept]
    # Re-measured batch-norm statistics are those of the averaged first layer's outputs on the batches given.
    batches = [torch.randn(8, 4, generator=torch.Generator().manual_seed(i)) + 2 for i in range(3)]
    remeasured = trainer.average_checkpoints("discriminator", 4, 6, out=tmp_path / "bn.safetensors",
                                             batch_norm_batches=batches, forward=lambda module, batch: module(batch))
    with torch.no_grad():
        activations = torch.cat([remeasured[0](batch) for batch in batches])
    torch.testing.assert_close(remeasured[1].running_mean, activations.mean(0), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(remeasured[1].running_mean, averaged[1].running_mean, atol=1e-3)
    torch.testing.assert_close(remeasured.state_dict()["0.weight"], averaged.state_dict()["0.weight"])
    with pytest.raises(ValueError, match=r"kept steps: \[2, 4, 6\]"):
        trainer.average_checkpoints("discriminator", first_step=7)
    with pytest.raises(ValueError, match="name the model"):
        trainer.average_checkpoints()


def test_average_state_dicts_and_batch_norm_remeasurement_check_their_inputs():
    a, b = {"w": torch.zeros(2), "n": torch.tensor(1)}, {"w": torch.ones(2), "n": torch.tensor(5)}
    average = average_state_dicts([a, b])
    assert average["w"].tolist() == [0.5, 0.5] and average["n"].item() == 5
    with pytest.raises(ValueError, match="at least one"):
        average_state_dicts([])
    with pytest.raises(ValueError, match="shape"):
        average_state_dicts([a, {"w": torch.ones(3), "n": torch.tensor(1)}])
    with pytest.raises(ValueError, match="other tensors"):
        average_state_dicts([a, {"w": torch.ones(2)}])
    with pytest.raises(ValueError, match="at least one batch"):
        recompute_batch_norm_statistics(nn.BatchNorm1d(2), [], lambda module, batch: module(batch))


def test_trainer_refuses_bad_options_and_results_with_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        _toy_trainer(tmp_path / "x.safetensors", [], batch_size=0)
    models = _toy_models()
    optimizer = torch.optim.SGD(models["generator"].parameters(), lr=0.1)
    other = torch.optim.SGD(models["discriminator"].parameters(), lr=0.1)
    options = TrainerOptions(out=tmp_path / "x.safetensors", steps=2, batch_size=2, progress=False)

    def returns(values):
        return lambda batch, trainer: {name: value(trainer.models["generator"](batch["a"]))
                                       for name, value in values.items()}

    with pytest.raises(ValueError, match="scheduler 'generator' must drive"):
        Trainer(options, models, {"generator": optimizer}, returns({}), Vectors(4),
                schedulers={"generator": torch.optim.lr_scheduler.StepLR(other, 1)})
    with pytest.raises(ValueError, match="both validation_dataset and validate"):
        Trainer(options, models, {"generator": optimizer}, returns({}), Vectors(4), validation_dataset=Vectors(2))
    with pytest.raises(ValueError, match="model name 'a.b'"):
        Trainer(options, {"a.b": models["generator"]}, {"generator": optimizer}, returns({}), Vectors(4))
    missing = Trainer(options, models, {"generator": optimizer}, returns({"other": lambda x: x.mean()}), Vectors(4))
    with pytest.raises(ValueError, match=r"returned \['other'\], without 'total'"):
        missing.fit()
    reserved = Trainer(options, models, {"generator": optimizer}, returns({"lr": lambda x: x.mean()}), Vectors(4))
    with pytest.raises(ValueError, match="Trainer's own columns"):
        reserved.fit()
    not_finite = Trainer(options, models, {"generator": optimizer},
                         returns({"total": lambda x: x.mean() * float("nan")}), Vectors(4))
    with pytest.raises(FloatingPointError, match="step 1: the loss minimised"):
        not_finite.fit()
    # A checkpoint of a run with another seed does not continue this run's batches.
    good = Trainer(options, models, {"generator": optimizer}, returns({"total": lambda x: x.mean()}), Vectors(4))
    good.fit()
    other_seed = TrainerOptions(out=tmp_path / "y.safetensors", steps=2, batch_size=2, seed=1, progress=False)
    with pytest.raises(ValueError, match="seed 0, this run has 1"):
        Trainer(other_seed, models, {"generator": optimizer}, returns({"total": lambda x: x.mean()}),
                Vectors(4)).fit(resume=tmp_path / "x.ckpt.safetensors")
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        good.fit(resume=tmp_path / "none.ckpt.safetensors")


def test_batch_order_is_a_seeded_permutation_per_epoch(tmp_path):
    trainer = Trainer(TrainerOptions(out=tmp_path / "x.safetensors", steps=10, batch_size=4, seed=3),
                      {"m": nn.Linear(1, 1)}, {"m": torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)},
                      lambda batch, trainer: {}, Vectors(6))
    order = [index for step in range(6) for index in trainer.batch_indices(step)]  # 24 items = 4 epochs of 6
    rng = np.random.default_rng(3)
    assert order == [int(i) for _ in range(4) for i in rng.permutation(6)]
    assert all(sorted(order[e * 6:(e + 1) * 6]) == list(range(6)) for e in range(4))
