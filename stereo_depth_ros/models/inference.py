"""One inference interface for every network: PyTorch or onnxruntime behind :class:`NetworkRunner`.

A :class:`NetworkRunner` holds one ``torch.nn.Module`` whose ``forward`` takes tensors only and returns a tensor or a
tuple of tensors. With the ``"torch"`` backend it runs the module (on the CPU or CUDA, float32 or float16); with
``"onnx"`` it runs the same module exported to ONNX by :func:`export_onnx`, in onnxruntime on the CPU, which we
measured several times faster than eager PyTorch for the stereo network (docs/benchmarks.md). ``"auto"`` picks
onnxruntime on the CPU (a plain install has it) and PyTorch on CUDA.

ONNX graphs are exported once per input size and cached on disk, so a node's first frame does not wait for the
export (4.7 s at 1280x1024 on the demo machine): the file name is a SHA-256 over the weights' SHA-256 (or the
module's tensors when no file is known), the module's configuration, the input names and shapes, the output names,
the opset and the PyTorch version. The folder is ``$STEREO_DEPTH_ROS_CACHE`` if set, else
``$XDG_CACHE_HOME/stereo_depth_ros/onnx`` (``~/.cache/stereo_depth_ros/onnx``). Files are written atomically (a
temporary file renamed into place); a file onnxruntime cannot load is exported again and replaced, and a folder
that cannot be written only costs the cache (the graph is then kept in memory).

:func:`check_backends_agree` runs both backends on the same input and reports their largest difference.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from stereo_depth_ros.device import resolve_device

LOGGER = logging.getLogger(__name__)
BACKENDS = ("auto", "torch", "onnx")
CACHE_ENVIRONMENT_VARIABLE = "STEREO_DEPTH_ROS_CACHE"
ONNX_OPSET = 17


def default_cache_dir() -> Path:
    """The ONNX cache folder: ``$STEREO_DEPTH_ROS_CACHE``, else ``$XDG_CACHE_HOME/stereo_depth_ros/onnx``, else
    ``~/.cache/stereo_depth_ros/onnx`` (not created here)."""
    configured = os.environ.get(CACHE_ENVIRONMENT_VARIABLE)
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "stereo_depth_ros" / "onnx"


def onnxruntime_available() -> bool:
    """Whether ``onnxruntime`` can be imported."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, device: torch.device) -> str:
    """``"torch"`` or ``"onnx"`` for a ``backend`` option on ``device``.

    ``"auto"``: onnxruntime on the CPU when it is installed, PyTorch otherwise (and always on CUDA).

    Raises:
        ValueError: for a backend not in :data:`BACKENDS`, or ``"onnx"`` without onnxruntime installed.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "onnx" if device.type == "cpu" and onnxruntime_available() else "torch"
    if backend == "onnx" and not onnxruntime_available():
        raise ValueError("backend 'onnx' needs onnxruntime (pip install onnxruntime), which is not installed")
    return backend


def export_onnx(module: torch.nn.Module, input_shapes: Sequence[Sequence[int]], input_names: Sequence[str],
                output_names: Sequence[str], path: str | Path | None = None) -> bytes:
    """Export a module to ONNX for fixed input shapes (float32, on the CPU, eval mode), opset :data:`ONNX_OPSET`.

    The module itself is left as it is (a float16 or CUDA module is copied to float32 on the CPU first).

    Args:
        module: ``forward(*inputs)`` returning a tensor or a tuple of tensors.
        input_shapes: one shape per input, e.g. ``[(1, 3, 480, 640), (1, 3, 480, 640)]``.
        input_names, output_names: the graph's input and output names (one per input and per output).
        path: also write the graph there, atomically (None: only return it).

    Returns:
        The serialised ONNX model.

    Raises:
        ValueError: if the numbers of shapes and input names differ.
        OSError: if ``path`` cannot be written.
    """
    if len(input_shapes) != len(input_names):
        raise ValueError(f"{len(input_shapes)} input shapes for {len(input_names)} input names {list(input_names)}")
    parameter = next(iter(module.parameters()), None)
    if parameter is not None and (parameter.device.type != "cpu" or parameter.dtype != torch.float32):
        module = copy.deepcopy(module).float().cpu()
    was_training = module.training
    module.eval()
    example = tuple(torch.zeros(*shape) for shape in input_shapes)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, example, buffer, opset_version=ONNX_OPSET, input_names=list(input_names),
                              output_names=list(output_names), dynamo=False)
    finally:
        module.train(was_training)
    data = buffer.getvalue()
    if path is not None:
        write_atomically(path, data)
    return data


def write_atomically(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder renamed into place, so that readers
    see either the old file or the complete new one (the folder is created).

    Raises:
        OSError: if the folder or file cannot be written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def state_digest(module: torch.nn.Module) -> str:
    """Hex SHA-256 over a module's state dict (names, dtypes, shapes and bytes of every tensor), for modules built
    in memory that have no weights file to hash."""
    digest = hashlib.sha256()
    for key, value in module.state_dict().items():
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def cache_key(weights_sha256: str, config: dict | None, input_names: Sequence[str],
              input_shapes: Sequence[Sequence[int]], output_names: Sequence[str]) -> str:
    """The ONNX cache file's name (without ``.onnx``): a hex SHA-256 of everything the exported graph depends on.

    Example:
        >>> a = cache_key("ab" * 32, {"max_disparity": 192}, ["left"], [(1, 3, 64, 64)], ["stage_0"])
        >>> b = cache_key("ab" * 32, {"max_disparity": 192}, ["left"], [(1, 3, 64, 96)], ["stage_0"])
        >>> len(a), a == b
        (64, False)
    """
    document = {"weights_sha256": weights_sha256, "config": config, "input_names": list(input_names),
                "input_shapes": [[int(n) for n in shape] for shape in input_shapes],
                "output_names": list(output_names), "opset": ONNX_OPSET, "torch": torch.__version__}
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


def _open_session(model: bytes | str):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class NetworkRunner:
    """One network behind the ``torch`` and ``onnx`` backends.

    Args:
        module: the network; ``forward(*inputs)`` takes float tensors and returns a tensor or a tuple of tensors.
            It is put in eval mode and moved to ``device`` (and float16 with ``half``).
        input_names, output_names: names of the inputs and outputs (the ONNX graph's; also their count).
        backend: "auto" (onnxruntime on the CPU when installed, PyTorch on CUDA), "torch" or "onnx" (onnxruntime,
            always on the CPU).
        device: "auto", "cpu" or "cuda" (where the ``torch`` backend runs).
        half: run the ``torch`` backend in float16 (CUDA only; ignored with a warning elsewhere).
        weights_sha256: hex SHA-256 of the weights file the module came from (None: a digest of its tensors).
        config: the module's configuration (JSON-serialisable); part of the ONNX cache key.
        cache_dir: ONNX cache folder (None: :func:`default_cache_dir`).
        use_cache: False keeps exported graphs in memory only.

    Attributes:
        backend: "torch" or "onnx", the one that runs.
        device: the ``torch.device`` of the ``torch`` backend.
        exports: how many graphs this runner exported (cache loads do not count).

    Raises:
        ValueError: for an invalid backend or device, CUDA asked for but absent, or no input or output names.

    Example:
        >>> runner = NetworkRunner(torch.nn.Identity(), ["x"], ["y"], backend="torch")
        >>> runner.run(torch.ones(1, 2))[0].tolist()
        [[1.0, 1.0]]
    """

    def __init__(self, module: torch.nn.Module, input_names: Sequence[str], output_names: Sequence[str],
                 backend: str = "auto", device: str = "cpu", half: bool = False, weights_sha256: str | None = None,
                 config: dict | None = None, cache_dir: str | Path | None = None, use_cache: bool = True) -> None:
        if not input_names or not output_names:
            raise ValueError("a network runner needs at least one input name and one output name")
        self.device = resolve_device(device)
        self.backend = resolve_backend(backend, self.device)
        self.half = bool(half and self.device.type == "cuda" and self.backend == "torch")
        if half and not self.half:
            warnings.warn("half precision needs CUDA and the torch backend; running in float32", stacklevel=2)
        self.module = module.eval().to(self.device, torch.float16 if self.half else torch.float32)
        self.input_names = list(input_names)
        self.output_names = list(output_names)
        self.config = config
        self._weights_sha256 = weights_sha256
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.use_cache = use_cache
        self.exports = 0
        self._sessions: dict[tuple[tuple[int, ...], ...], object] = {}

    @property
    def weights_sha256(self) -> str:
        """The weights' SHA-256 used in the cache key (a digest of the module's tensors when none was given)."""
        if self._weights_sha256 is None:
            self._weights_sha256 = state_digest(self.module)
        return self._weights_sha256

    def cache_path(self, input_shapes: Sequence[Sequence[int]]) -> Path:
        """The cache file of the ONNX graph for these input shapes (it may not exist yet)."""
        key = cache_key(self.weights_sha256, self.config, self.input_names, input_shapes, self.output_names)
        return self.cache_dir / f"{key}.onnx"

    def prepare(self, *input_shapes: Sequence[int]) -> None:
        """Build what the backend needs for inputs of these shapes: the ONNX session (from the disk cache, or
        exported and cached); nothing for PyTorch.

        Raises:
            ValueError: if the number of shapes differs from the number of inputs.
        """
        if len(input_shapes) != len(self.input_names):
            raise ValueError(f"{len(input_shapes)} input shapes for inputs {self.input_names}")
        if self.backend == "onnx":
            self._session(tuple(tuple(int(n) for n in shape) for shape in input_shapes))

    def run(self, *inputs: torch.Tensor) -> list[np.ndarray]:
        """Run the network on float tensors (any device; moved as needed).

        Returns:
            One float32 NumPy array per output, with the module's output shapes.

        Raises:
            ValueError: if the number of inputs differs from the number of input names.
        """
        if len(inputs) != len(self.input_names):
            raise ValueError(f"{len(inputs)} inputs given for inputs {self.input_names}")
        if self.backend == "onnx":
            session = self._session(tuple(tuple(x.shape) for x in inputs))
            feed = {name: x.detach().cpu().float().numpy() for name, x in zip(self.input_names, inputs)}
            return [np.asarray(output, dtype=np.float32) for output in session.run(None, feed)]
        dtype = torch.float16 if self.half else torch.float32
        with torch.inference_mode():
            outputs = self.module(*(x.to(self.device, dtype) for x in inputs))
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        return [output.float().cpu().numpy() for output in outputs]

    def _session(self, input_shapes: tuple[tuple[int, ...], ...]):
        if input_shapes not in self._sessions:
            self._sessions[input_shapes] = self._load_or_export(input_shapes)
        return self._sessions[input_shapes]

    def _export(self, input_shapes) -> bytes:
        self.exports += 1
        LOGGER.info("exporting the ONNX graph for inputs %s", [list(shape) for shape in input_shapes])
        return export_onnx(self.module, input_shapes, self.input_names, self.output_names)

    def _load_or_export(self, input_shapes):
        if not self.use_cache:
            return _open_session(self._export(input_shapes))
        path = self.cache_path(input_shapes)
        if path.is_file():
            try:
                session = _open_session(str(path))
                LOGGER.debug("loaded the ONNX graph from the cache file %s", path)
                return session
            except Exception as error:  # onnxruntime raises its own exception types for a corrupt file
                LOGGER.warning("ONNX cache file %s cannot be loaded (%s); exporting it again", path, error)
        data = self._export(input_shapes)
        try:
            write_atomically(path, data)
        except OSError as error:
            LOGGER.warning("cannot write the ONNX cache file %s (%s); keeping the graph in memory only", path, error)
        return _open_session(data)


@dataclass(frozen=True)
class BackendAgreement:
    """How closely the ``torch`` and ``onnx`` backends agree on one input.

    Attributes:
        max_abs_difference: the largest absolute difference over every output element (the outputs' unit).
        per_output: the largest absolute difference of each output.
        tolerance: the bound it was checked against.
        agree: ``max_abs_difference <= tolerance`` (and every value finite).
    """

    max_abs_difference: float
    per_output: tuple[float, ...]
    tolerance: float
    agree: bool


def check_backends_agree(module: torch.nn.Module, inputs: Sequence[torch.Tensor], input_names: Sequence[str],
                         output_names: Sequence[str], tolerance: float = 1e-3) -> BackendAgreement:
    """Run ``module`` in PyTorch (float32, CPU) and exported to onnxruntime on the same inputs and compare.

    The export is kept in memory (nothing is cached) and the module is not changed.

    Args:
        module: as for :class:`NetworkRunner`.
        inputs: one float tensor per input name.
        input_names, output_names: as for :class:`NetworkRunner`.
        tolerance: the largest accepted absolute difference (for the stereo network: pixels of disparity).

    Returns:
        :class:`BackendAgreement`.

    Raises:
        ValueError: for inputs that do not match the names, or onnxruntime missing.

    Example:
        >>> check_backends_agree(torch.nn.Linear(3, 2), [torch.ones(1, 3)], ["x"], ["y"]).agree
        True
    """
    cpu_module = copy.deepcopy(module).float().cpu()
    results = []
    for backend in ("torch", "onnx"):
        runner = NetworkRunner(cpu_module, input_names, output_names, backend=backend, device="cpu",
                               use_cache=False)
        results.append(runner.run(*inputs))
    differences = []
    for a, b in zip(*results):
        if a.shape != b.shape:
            raise ValueError(f"the backends' outputs differ in shape: {a.shape} vs {b.shape}")
        differences.append(float(np.max(np.abs(a - b))) if a.size else 0.0)
    largest = max(differences)
    return BackendAgreement(largest, tuple(differences), float(tolerance), bool(np.isfinite(largest)
                                                                                 and largest <= tolerance))
