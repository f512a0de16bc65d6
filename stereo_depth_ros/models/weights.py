"""One weights format for every model family: safetensors with the architecture and configuration in its metadata.

A weights file holds tensors and a JSON header only (safetensors), so loading one can never run code (no pickle).
Its metadata carries ``architecture`` (a versioned name such as ``"coarse-to-fine-stereo/v2"``) and ``config``
(the JSON keyword arguments that build the module), plus any extra facts the writer adds (training steps, data).
The model card, ``<weights stem>.json`` beside the file, records the file's SHA-256 in its ``"sha256"`` field;
:func:`load_weights` checks it whenever the card exists, so a file that was replaced, truncated or corrupted after
the card was written is refused with a message naming it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import torch

CHUNK_BYTES = 1 << 20


class WeightsError(RuntimeError):
    """A weights file is missing, unreadable, truncated, for another architecture, has a bad configuration, does
    not fit the network, or differs from its model card's SHA-256 (the message names the file and the problem)."""


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 digest of a file's bytes (64 lowercase hex characters).

    Raises:
        WeightsError: if the file does not exist or cannot be read.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     _ = (Path(folder) / "empty").write_bytes(b"")
        ...     sha256_file(Path(folder) / "empty")[:16]
        'e3b0c44298fc1c14'
    """
    path = Path(path)
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
                digest.update(chunk)
    except FileNotFoundError:
        raise WeightsError(f"weights file {path} does not exist") from None
    except OSError as error:
        raise WeightsError(f"weights file {path} cannot be read: {error}") from error
    return digest.hexdigest()


def model_card_path(weights_path: str | Path) -> Path:
    """The model card of a weights file: ``<stem>.json`` in the same folder."""
    return Path(weights_path).with_suffix(".json")


def save_weights(module: torch.nn.Module, path: str | Path, architecture: str, config: dict,
                 extra_metadata: dict | None = None) -> None:
    """Write a module's state dict to a safetensors file with its architecture and configuration in the metadata.

    Floating-point tensors are stored as float32 (whatever precision the module runs in), others as they are.

    Args:
        module: the network.
        path: output ``.safetensors`` file (its folder is created).
        architecture: the versioned architecture name :func:`load_weights` will require.
        config: the JSON-serialisable keyword arguments that build the module.
        extra_metadata: more facts to store (training steps, data); strings as they are, other values JSON-encoded.
            The keys ``architecture`` and ``config`` are reserved.

    Raises:
        ValueError: for an empty architecture, a configuration that is not a JSON object, or a reserved key in
            ``extra_metadata``.
    """
    from safetensors.torch import save_file

    if not architecture or not isinstance(architecture, str):
        raise ValueError(f"architecture must be a non-empty string, got {architecture!r}")
    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict of the module's keyword arguments, got {type(config).__name__}")
    reserved = {"architecture", "config"} & set(extra_metadata or {})
    if reserved:
        raise ValueError(f"extra_metadata may not set {sorted(reserved)}: they are written from the arguments")
    metadata = {"architecture": architecture, "config": json.dumps(config)}
    for key, value in (extra_metadata or {}).items():
        metadata[key] = value if isinstance(value, str) else json.dumps(value)
    state = module.state_dict()
    tensors = {key: (value.detach().float() if value.dtype.is_floating_point else value.detach()).contiguous().cpu()
               for key, value in state.items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)


def read_architecture(path: str | Path) -> str | None:
    """The architecture name in the metadata of a weights file written by :func:`save_weights` (None if it has
    none), read without loading its tensors; for callers that accept more than one architecture.

    Raises:
        WeightsError: naming the file if it does not exist or is not a readable safetensors file.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return (handle.metadata() or {}).get("architecture")
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise WeightsError(f"weights file {path} is not a readable safetensors file (truncated or corrupt?): "
                           f"{error}") from error


def load_weights(path: str | Path, architecture: str, build: Callable[[dict], torch.nn.Module]
                 ) -> tuple[torch.nn.Module, dict]:
    """Build a module from a safetensors file written by :func:`save_weights`, checking what it claims to be.

    The checks, in order: the file exists; its SHA-256 equals the model card's ``"sha256"`` (when a card with that
    field exists beside it); it is a complete safetensors file; its metadata names ``architecture``; its ``config``
    is a JSON object that ``build`` accepts; the tensors are exactly the module's, with its shapes.

    Args:
        path: the ``.safetensors`` file.
        architecture: the architecture name the file must carry.
        build: ``build(config) -> module`` (the config dict from the metadata, which the caller may adjust first).

    Returns:
        ``(module, metadata)``: the module with the file's tensors, in eval mode on the CPU, and the file's
        metadata (strings, as stored).

    Raises:
        WeightsError: naming the file and what is wrong (missing, SHA-256 differs from the model card, unreadable
            card, not safetensors or truncated, another architecture, missing or bad config, tensors that do not
            fit).
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    check_model_card(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise WeightsError(f"weights file {path} is not a readable safetensors file (truncated or corrupt?): "
                           f"{error}") from error
    found = metadata.get("architecture")
    if found != architecture:
        raise WeightsError(f"weights file {path} is for architecture {found!r}, expected {architecture!r}")
    try:
        config = json.loads(metadata["config"])
    except (KeyError, json.JSONDecodeError) as error:
        raise WeightsError(f"weights file {path} has no valid 'config' in its metadata") from error
    if not isinstance(config, dict):
        raise WeightsError(f"weights file {path} has a 'config' that is not a JSON object: {config!r}")
    try:
        module = build(config)
    except (TypeError, ValueError) as error:
        raise WeightsError(f"weights file {path} has an invalid config {config}: {error}") from error
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise WeightsError(f"weights file {path} does not match the network: {error}") from error
    return module.eval(), metadata


def check_model_card(path: str | Path) -> str | None:
    """Compare a weights file's SHA-256 with its model card's ``"sha256"`` field, when the card has one.

    Returns:
        The file's hex digest when it was checked, None when there is no card or the card records no digest.

    Raises:
        WeightsError: if the card is not a JSON object, its ``sha256`` is not a string, or the digests differ
            (naming both files).
    """
    path = Path(path)
    card_path = model_card_path(path)
    if not card_path.is_file():
        return None
    try:
        card = json.loads(card_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WeightsError(f"model card {card_path} of weights file {path} is not readable JSON: {error}") from error
    if not isinstance(card, dict):
        raise WeightsError(f"model card {card_path} of weights file {path} is not a JSON object")
    expected = card.get("sha256")
    if expected is None:
        return None
    if not isinstance(expected, str):
        raise WeightsError(f"model card {card_path} has a 'sha256' that is not a hex string: {expected!r}")
    actual = sha256_file(path)
    if actual != expected.lower():
        raise WeightsError(f"weights file {path} has SHA-256 {actual}, but its model card {card_path} records "
                           f"{expected}: the file was changed, truncated or replaced after the card was written")
    return actual
