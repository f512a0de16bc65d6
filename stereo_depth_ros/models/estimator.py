"""The coarse-to-fine network as a :class:`~stereo_depth_ros.models.base.StereoEstimator` (registered as
``"coarse-to-fine"`` in :mod:`stereo_depth_ros.models.registry`).

Runs through :class:`~stereo_depth_ros.models.inference.NetworkRunner`: the PyTorch model, or on the CPU (by
default) the same model exported to ONNX and run by onnxruntime, which we measured several times faster than eager
PyTorch for this network (docs/benchmarks.md). The ONNX graph is exported once per input size and stage count and
cached on disk (keyed by the weights' SHA-256); :meth:`CoarseToFineEstimator.prepare` builds it before the first
frame. Both back-ends give the same disparities to within 1e-3 px.

Images narrower than 1280 px are enlarged before the network runs (see :func:`working_scale`). This is because the
network's finest stage works at half its input resolution, and the packaged weights were trained on crops zoomed by
a median 1.8x. On 640x480 and 720x288 pairs, running at about 2x brought the stage-3 EPE on BDIS synthetic from
5.34 px to 4.81 px and the held-out photometric error from 0.0378 to 0.0346 (docs/stereo.md).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np
import torch

from stereo_depth_ros.images import bgr_to_tensor, check_stereo_pair
from stereo_depth_ros.models.base import StereoEstimator, resolve_stage
from stereo_depth_ros.models.coarse_to_fine import NUM_STAGES, CoarseToFineStereoNet, load_weights
from stereo_depth_ros.models.inference import BACKENDS, NetworkRunner
from stereo_depth_ros.models.weights import sha256_file

LOGGER = logging.getLogger(__name__)
AUTO_WORKING_WIDTH = 1280
MAX_AUTO_SCALE = 2.0
MAX_INPUT_SCALE = 4.0
INPUT_NAMES = ("left", "right")


def working_scale(width: int, input_scale: float | None = None) -> float:
    """Factor by which a ``width``-pixel-wide pair is enlarged before the network runs.

    ``input_scale=None`` (auto) gives ``clip(1280 / width, 1, 2)``: 2.0 for 640 px, about 1.78 for 720 px, and 1.0
    for 1280 px and wider, so that a 1280x1024 endoscope frame runs at its native size. A number is used as given.

    Args:
        width: image width in pixels (> 0).
        input_scale: None for auto, or a fixed factor in (0, 4].

    Returns:
        The scale factor (float > 0).

    Raises:
        ValueError: for a width <= 0 or a scale outside (0, 4].
    """
    if width <= 0:
        raise ValueError(f"image width must be positive, got {width}")
    if input_scale is None:
        return float(min(MAX_AUTO_SCALE, max(1.0, AUTO_WORKING_WIDTH / width)))
    check_input_scale(input_scale)
    return float(input_scale)


def check_input_scale(input_scale: float | None) -> None:
    """Raise ValueError unless ``input_scale`` is None (auto) or a finite number in (0, 4]."""
    if input_scale is not None and not (math.isfinite(input_scale) and 0 < input_scale <= MAX_INPUT_SCALE):
        raise ValueError(f"input_scale must be in (0, {MAX_INPUT_SCALE:g}] or None for auto, got {input_scale}")


def default_weights_path() -> Path:
    """The trained weights shipped in the package (``stereo_depth_ros/weights/coarse_to_fine_stereo.safetensors``,
    the registry's ``default_weights`` of ``"coarse-to-fine"``)."""
    from stereo_depth_ros.models.registry import model_spec

    return model_spec("coarse-to-fine").default_weights


class CoarseToFineEstimator(StereoEstimator):
    """Coarse-to-fine stereo network as a :class:`~stereo_depth_ros.models.base.StereoEstimator`.

    Build it with ``registry.create_estimator("coarse-to-fine", ...)`` (same options, except ``model``).

    Args:
        weights: safetensors file, or None for the packaged weights; or pass ``model`` instead.
        model: an already built network (takes precedence over ``weights``).
        device: "auto" (CUDA when present), "cpu" or "cuda".
        max_disparity: search range in pixels at input resolution (None: the one stored with the weights).
        max_stage: last stage computed by default (0..3); earlier stops are cheaper.
        half: run in float16 (CUDA with the torch backend only; ignored elsewhere with a warning).
        backend: "auto" (onnxruntime on the CPU when installed, PyTorch on CUDA), "torch" or "onnx".
        input_scale: None (auto, see :func:`working_scale`) or a fixed factor in (0, 4]. The pair is resized by it
            (bicubic when enlarging, area average when shrinking), the network runs at that size with the search
            range scaled with it, and each stage is resized back and its disparities divided by the horizontal
            factor. 1.0 runs the network on the pair as given.
        cache_dir: ONNX cache folder (None: :func:`~stereo_depth_ros.models.inference.default_cache_dir`).

    Attributes:
        backend: "torch" or "onnx", the one that runs.
        device: the ``torch.device`` of the torch backend.
        weights_path: the weights file (None when ``model`` was given).

    Raises:
        stereo_depth_ros.models.weights.WeightsError: if the weights file is missing or wrong (naming it).
        ValueError: for an invalid device, backend, stage or input scale.
    """

    name = "coarse-to-fine"

    def __init__(self, weights: str | Path | None = None, model: CoarseToFineStereoNet | None = None,
                 device: str = "auto", max_disparity: int | None = None, max_stage: int = NUM_STAGES - 1,
                 half: bool = False, backend: str = "auto", input_scale: float | None = None,
                 cache_dir: str | Path | None = None) -> None:
        check_input_scale(input_scale)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.max_stage = resolve_stage(max_stage, NUM_STAGES, self.name)
        self.input_scale = input_scale
        self.weights_path = None if model is not None else Path(weights or default_weights_path())
        if model is None:
            model = load_weights(self.weights_path, max_disparity=max_disparity)
            self._weights_sha256 = sha256_file(self.weights_path)
        else:
            if max_disparity is not None and max_disparity != model.max_disparity:
                model = _with_max_disparity(model, max_disparity)
            self._weights_sha256 = None  # the runner hashes the tensors
        self._cache_dir = cache_dir
        self._backend_option, self._device_option, self._half_option = backend, device, half
        # The runner of the network at its own search range resolves backend, device and precision for all.
        first = self._make_runner(model.eval(), self.max_stage)
        self.device, self.backend, self.half = first.device, first.backend, first.half
        self._device_option = self.device.type
        self.model = first.module.model
        self._runners: dict[tuple[int, int], NetworkRunner] = {(self.model.max_disparity, self.max_stage): first}
        self._working_models: dict[int, CoarseToFineStereoNet] = {self.model.max_disparity: self.model}

    @property
    def num_stages(self) -> int:
        """Number of maps :meth:`estimate` returns by default (``max_stage + 1``)."""
        return self.max_stage + 1

    @property
    def max_disparity(self) -> int:
        """Search range in pixels at input resolution."""
        return self.model.max_disparity

    def disparity_range(self) -> tuple[float, float]:
        """``(0, max_disparity)`` in pixels at input resolution: the network's outputs are >= 0 (ReLU) and its
        full-range stage searches up to ``max_disparity``."""
        return 0.0, float(self.max_disparity)

    def working_scale(self, width: int) -> float:
        """The factor a ``width``-pixel-wide pair is resized by before the network (:func:`working_scale` with this
        estimator's ``input_scale``)."""
        return working_scale(width, self.input_scale)

    def prepare(self, height: int, width: int) -> None:
        """Build the backend for ``height`` x ``width`` pairs and run it once on a black pair, so the first frame
        does not wait for the ONNX export (or cache load) and the first-call allocations.

        Raises:
            ValueError: for a size that is not positive.
        """
        super().prepare(height, width)
        work_height, work_width, x_scale = self._working_size(height, width)
        model = self._working_model(math.ceil(self.max_disparity * x_scale))
        black = torch.zeros(1, 3, work_height, work_width)
        self._runner(model, self.max_stage).run(black, black)

    def estimate(self, left_bgr: np.ndarray, right_bgr: np.ndarray, max_stage: int | None = None
                 ) -> list[np.ndarray]:
        """Disparity of every stage for a rectified uint8 BGR pair.

        The pair is first resized by :func:`working_scale` (``input_scale`` of the constructor); the returned maps
        are always at the input size.

        Args:
            left_bgr, right_bgr: (H, W, 3) uint8 BGR rectified pair of the same size.
            max_stage: last stage to compute, 0..3 (None: the constructor's ``max_stage``).

        Returns:
            ``max_stage + 1`` arrays (H, W) float32, pixels at input resolution, coarse (stage 0) to fine. The
            network gives a value everywhere; no NaN unless the input had them.

        Raises:
            ValueError: for images that are not a same-size (H, W, 3) uint8 pair, or a stage outside 0..3.
        """
        check_stereo_pair(left_bgr, right_bgr)
        stage = self.max_stage if max_stage is None else resolve_stage(max_stage, NUM_STAGES, self.name)
        height, width = left_bgr.shape[:2]
        work_height, work_width, x_scale = self._working_size(height, width)
        enlarge = self.working_scale(width) > 1.0
        if (work_height, work_width) != (height, width):
            interpolation = cv2.INTER_CUBIC if enlarge else cv2.INTER_AREA
            left_bgr, right_bgr = (cv2.resize(image, (work_width, work_height), interpolation=interpolation)
                                   for image in (left_bgr, right_bgr))
        model = self._working_model(math.ceil(self.max_disparity * x_scale))
        outputs = self._run(model, bgr_to_tensor(left_bgr), bgr_to_tensor(right_bgr), stage)
        if (work_height, work_width) == (height, width):
            return outputs
        interpolation = cv2.INTER_AREA if enlarge else cv2.INTER_LINEAR
        return [cv2.resize(d, (width, height), interpolation=interpolation) / np.float32(x_scale) for d in outputs]

    def _working_size(self, height: int, width: int) -> tuple[int, int, float]:
        """``(height, width, x_scale)`` at which the network runs for a ``height`` x ``width`` pair."""
        scale = working_scale(width, self.input_scale)
        work_height, work_width = max(1, round(height * scale)), max(1, round(width * scale))
        return work_height, work_width, work_width / width

    def _run(self, model: CoarseToFineStereoNet, left: torch.Tensor, right: torch.Tensor, stage: int
             ) -> list[np.ndarray]:
        outputs = self._runner(model, stage).run(left, right)
        return [np.asarray(output[0, 0], dtype=np.float32) for output in outputs]  # no copy: fresh arrays per call

    def _make_runner(self, model: CoarseToFineStereoNet, stage: int) -> NetworkRunner:
        return NetworkRunner(_Stages(model, stage), INPUT_NAMES, [f"stage_{i}" for i in range(stage + 1)],
                             backend=self._backend_option, device=self._device_option, half=self._half_option,
                             weights_sha256=self._weights_sha256, config=dict(model.config, max_stage=stage),
                             cache_dir=self._cache_dir)

    def _runner(self, model: CoarseToFineStereoNet, stage: int) -> NetworkRunner:
        key = (model.max_disparity, stage)
        if key not in self._runners:
            self._runners[key] = self._make_runner(model, stage)
        return self._runners[key]

    def _working_model(self, max_disparity: int) -> CoarseToFineStereoNet:
        """The network with its search range in pixels of the working size (shares no tensors with the original)."""
        if max_disparity not in self._working_models:
            self._working_models[max_disparity] = _with_max_disparity(self.model, max_disparity).to(
                self.device, torch.float16 if self.half else torch.float32).eval()
        return self._working_models[max_disparity]


class _Stages(torch.nn.Module):
    """The network up to ``max_stage`` with tensor-only inputs and a tuple of outputs (what ONNX export needs)."""

    def __init__(self, model: CoarseToFineStereoNet, max_stage: int) -> None:
        super().__init__()
        self.model = model
        self.max_stage = max_stage

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model(left, right, self.max_stage))


def _with_max_disparity(model: CoarseToFineStereoNet, max_disparity: int) -> CoarseToFineStereoNet:
    config = dict(model.config, max_disparity=int(max_disparity))
    clone = CoarseToFineStereoNet(**config)
    clone.load_state_dict(model.state_dict())
    return clone
