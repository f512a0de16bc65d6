"""The model card of a weights file: ``<weights stem>.json`` beside it, with the file's SHA-256.

Every training writes one for the weights it produces (what the network is, the data, the options, the machine,
the final losses). The ``"sha256"`` field lets :func:`stereo_depth_ros.models.weights.load_weights` refuse a weights
file that was changed, truncated or replaced after its card was written.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from stereo_depth_ros.evaluation.evaluate import json_ready
from stereo_depth_ros.models.weights import model_card_path, sha256_file


def write_model_card(weights_path: str | Path, card: dict) -> Path:
    """Write ``card`` as ``<weights stem>.json`` beside the weights, adding ``"sha256"`` (hex SHA-256 of the file).

    Write the card after the weights' final version: the digest is of the file as it is now.

    Args:
        weights_path: the weights file (``.safetensors``); it must exist.
        card: JSON-serialisable facts about the weights (strings, numbers, lists, dicts); a ``"sha256"`` in it is
            replaced by the file's digest. Non-finite floats are written as null (JSON has no NaN;
            :func:`stereo_depth_ros.evaluation.evaluate.json_ready`).

    Returns:
        the path of the card written.

    Raises:
        WeightsError: if the weights file does not exist or cannot be read.
        TypeError: if ``card`` is not a dict or holds a value JSON cannot represent.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     weights = Path(folder) / "tiny.safetensors"
        ...     _ = weights.write_bytes(b"")
        ...     card = json.loads(write_model_card(weights, {"steps": 2}).read_text())
        ...     sorted(card), card["sha256"][:16]
        (['sha256', 'steps'], 'e3b0c44298fc1c14')
    """
    if not isinstance(card, dict):
        raise TypeError(f"a model card is a dict, got {type(card).__name__}")
    digest = sha256_file(weights_path)
    record = json_ready({key: value for key, value in card.items() if key != "sha256"})
    record["sha256"] = digest
    try:
        text = json.dumps(record, indent=2, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TypeError(f"model card of {weights_path} holds a value JSON cannot represent: {error}") from error
    path = model_card_path(weights_path)
    path.write_text(text + "\n")
    return path


def mean_of_last_steps(history: Sequence[dict], count: int = 50, keys: Sequence[str] | None = None) -> dict:
    """The mean of each logged loss over the last ``count`` steps of a Trainer history (the card's final losses).

    Args:
        history: the Trainer's rows, oldest first (``{"step", <losses>..., "lr" or "lr_<name>", "seconds"}``).
        count: how many of the last rows to average, >= 1.
        keys: the losses to report; None = every column but ``step``, ``seconds`` and the learning rates.

    Returns:
        ``{loss name: mean}`` (floats); ``{}`` for an empty history.

    Example:
        >>> mean_of_last_steps([{"step": 1, "total": 1.0, "lr": 0.1, "seconds": 1.0},
        ...                     {"step": 2, "total": 3.0, "lr": 0.1, "seconds": 2.0}])
        {'total': 2.0}
    """
    rows = list(history)[-count:]
    if not rows:
        return {}
    if keys is None:
        keys = [key for key in rows[0] if key not in ("step", "seconds") and key != "lr" and not key.startswith("lr_")]
    return {key: float(np.mean([row[key] for row in rows])) for key in keys}


def machine_facts(device: torch.device | str | None = None) -> dict:
    """Where a run ran, for its model card: platform, processor, PyTorch version, threads and (if given) device."""
    facts = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
             "torch": torch.__version__, "threads": torch.get_num_threads()}
    if device is not None:
        facts["device"] = str(device)
    return facts


def run_facts(trainer, started: float, device: torch.device | str | None = None) -> dict:
    """The fields every model card gives about the run that made its weights.

    Args:
        trainer: the :class:`~stereo_depth_ros.training.trainer.Trainer` after ``fit`` (``steps_done``,
            ``history``).
        started: ``time.time()`` when this session's training began (seconds since the epoch).
        device: the device it ran on (for :func:`machine_facts`).

    Returns:
        ``{"steps", "final_losses", "mean_losses_last_50_steps", "wall_time_s_this_session", "wall_time_s",
        "machine"}``: steps done, the last logged row, the mean of each loss over the last 50 steps, the wall time
        of this session and of the whole run (resumes included; None without history) in seconds, and where it ran.
    """
    history = trainer.history
    return {"steps": trainer.steps_done,
            "final_losses": dict(history[-1]) if history else {},
            "mean_losses_last_50_steps": mean_of_last_steps(history, 50),
            "wall_time_s_this_session": round(time.time() - started, 1),
            "wall_time_s": round(float(history[-1]["seconds"]), 1) if history else None,
            "machine": machine_facts(device)}
