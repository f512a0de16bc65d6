"""The one weights format: safetensors + architecture/config metadata + the model card's SHA-256, and each error."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from stereo_depth_ros.models import coarse_to_fine
from stereo_depth_ros.models.estimator import default_weights_path
from stereo_depth_ros.models.weights import (WeightsError, check_model_card, load_weights, model_card_path,
                                             save_weights, sha256_file)

ARCHITECTURE = "toy-network/v1"


class Toy(torch.nn.Module):
    def __init__(self, width: int = 3) -> None:
        super().__init__()
        self.width = width
        self.linear = torch.nn.Linear(width, 2)
        self.norm = torch.nn.BatchNorm1d(2)  # has an integer tensor (num_batches_tracked)


def _build(config: dict) -> Toy:
    return Toy(**config)


@pytest.fixture
def toy_file(tmp_path):
    torch.manual_seed(0)
    model = Toy(3)
    path = tmp_path / "toy.safetensors"
    save_weights(model, path, ARCHITECTURE, {"width": 3}, {"steps": 10, "note": "text"})
    return model, path


def test_round_trip_keeps_every_tensor_and_the_metadata(toy_file):
    model, path = toy_file
    loaded, metadata = load_weights(path, ARCHITECTURE, _build)
    assert not loaded.training
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    assert metadata["architecture"] == ARCHITECTURE and json.loads(metadata["config"]) == {"width": 3}
    assert metadata["steps"] == "10" and metadata["note"] == "text"


def test_a_model_card_with_the_right_sha256_is_accepted_and_a_wrong_one_refused(toy_file):
    _, path = toy_file
    card = model_card_path(path)
    assert card == path.with_suffix(".json")
    card.write_text(json.dumps({"name": "toy", "sha256": sha256_file(path)}))
    assert check_model_card(path) == sha256_file(path)
    load_weights(path, ARCHITECTURE, _build)
    card.write_text(json.dumps({"name": "toy", "sha256": "0" * 64}))
    mismatch = r"toy\.safetensors has SHA-256 [0-9a-f]{64}, but its model card .*toy\.json"
    with pytest.raises(WeightsError, match=mismatch):
        load_weights(path, ARCHITECTURE, _build)
    card.write_text("{not json")
    with pytest.raises(WeightsError, match="model card .*toy.json .* not readable JSON"):
        load_weights(path, ARCHITECTURE, _build)
    card.write_text(json.dumps({"name": "toy"}))  # a card without a digest (older cards) is not checked
    assert check_model_card(path) is None


def test_missing_truncated_and_foreign_files_are_weights_errors_naming_the_file(toy_file, tmp_path):
    _, path = toy_file
    with pytest.raises(WeightsError, match="missing.safetensors does not exist"):
        load_weights(tmp_path / "missing.safetensors", ARCHITECTURE, _build)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(WeightsError, match="truncated.safetensors is not a readable safetensors file"):
        load_weights(truncated, ARCHITECTURE, _build)
    text = tmp_path / "text.safetensors"
    text.write_text("these are not weights")
    with pytest.raises(WeightsError, match="text.safetensors is not a readable safetensors file"):
        load_weights(text, ARCHITECTURE, _build)


def test_a_pickle_is_refused_and_never_unpickled(tmp_path):
    class Bomb:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled')",))

    pickled = tmp_path / "pickled.safetensors"
    pickled.write_bytes(pickle.dumps({"linear.weight": Bomb()}))
    with pytest.raises(WeightsError, match="pickled.safetensors is not a readable safetensors file"):
        load_weights(pickled, ARCHITECTURE, _build)
    torch_file = tmp_path / "checkpoint.safetensors"
    torch.save(Toy().state_dict(), torch_file)
    with pytest.raises(WeightsError, match="checkpoint.safetensors is not a readable safetensors file"):
        load_weights(torch_file, ARCHITECTURE, _build)


def test_wrong_architecture_bad_config_and_wrong_tensors_are_weights_errors(toy_file, tmp_path):
    model, path = toy_file
    with pytest.raises(WeightsError,
                       match=r"toy.safetensors is for architecture 'toy-network/v1', expected 'other/v2'"):
        load_weights(path, "other/v2", _build)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    no_config = tmp_path / "no_config.safetensors"
    save_file(state, str(no_config), metadata={"architecture": ARCHITECTURE})
    with pytest.raises(WeightsError, match="no_config.safetensors has no valid 'config'"):
        load_weights(no_config, ARCHITECTURE, _build)
    list_config = tmp_path / "list_config.safetensors"
    save_file(state, str(list_config), metadata={"architecture": ARCHITECTURE, "config": "[3]"})
    with pytest.raises(WeightsError, match="list_config.safetensors has a 'config' that is not a JSON object"):
        load_weights(list_config, ARCHITECTURE, _build)
    unknown = tmp_path / "unknown.safetensors"
    save_file(state, str(unknown), metadata={"architecture": ARCHITECTURE, "config": '{"depth": 3}'})
    with pytest.raises(WeightsError, match="unknown.safetensors has an invalid config"):
        load_weights(unknown, ARCHITECTURE, _build)
    wider = tmp_path / "wider.safetensors"
    save_file(state, str(wider), metadata={"architecture": ARCHITECTURE, "config": '{"width": 5}'})
    with pytest.raises(WeightsError, match="wider.safetensors does not match the network"):
        load_weights(wider, ARCHITECTURE, _build)
    partial = tmp_path / "partial.safetensors"
    save_file({"linear.weight": state["linear.weight"]}, str(partial),
              metadata={"architecture": ARCHITECTURE, "config": '{"width": 3}'})
    with pytest.raises(WeightsError, match="partial.safetensors does not match the network"):
        load_weights(partial, ARCHITECTURE, _build)


def test_save_weights_refuses_reserved_metadata_and_stores_float32(tmp_path):
    model = Toy().half()
    with pytest.raises(ValueError, match="architecture"):
        save_weights(model, tmp_path / "a.safetensors", ARCHITECTURE, {"width": 3}, {"architecture": "x"})
    save_weights(model, tmp_path / "b.safetensors", ARCHITECTURE, {"width": 3})
    loaded, _ = load_weights(tmp_path / "b.safetensors", ARCHITECTURE, _build)
    assert loaded.linear.weight.dtype == torch.float32


def test_packaged_weights_match_their_model_card():
    path = default_weights_path()
    card = json.loads(model_card_path(path).read_text())
    assert card["sha256"] == sha256_file(path) == check_model_card(path)


def test_stereo_wrappers_use_the_common_format_and_check_the_card(tmp_path):
    torch.manual_seed(0)
    network = coarse_to_fine.CoarseToFineStereoNet(max_disparity=64)
    path = tmp_path / "net.safetensors"
    coarse_to_fine.save_weights(network, path, {"steps": 1})
    _, metadata = load_weights(path, coarse_to_fine.ARCHITECTURE, lambda c: coarse_to_fine.CoarseToFineStereoNet(**c))
    assert json.loads(metadata["config"]) == network.config
    assert coarse_to_fine.WeightsError is WeightsError
    path.with_suffix(".json").write_text(json.dumps({"sha256": "f" * 64}))
    with pytest.raises(WeightsError, match="net.safetensors has SHA-256"):
        coarse_to_fine.load_weights(path)
