"""The coarse-to-fine network behind the :class:`~stereo_depth_ros.models.base.DisparityEstimator` interface.

Runs the PyTorch model, or on the CPU (by default) the same model exported to ONNX and run by onnxruntime, which we
measured several times faster than eager PyTorch for this network (docs/benchmarks.md). The ONNX graph is exported
in memory once per input size and stage count; both back-ends give the same disparities to within 1e-3 px.

Images narrower than 1280 px are enlarged before the network runs (see :func:`working_scale`). This is because the
network's finest stage works at half its input resolution, and the packaged weights were trained on crops zoomed by
a median 1.8x. On 640x480 and 720x288 pairs, running at about 2x brought the stage-3 EPE on BDIS synthetic from
5.34 px to 4.81 px and the held-out photometric error from 0.0378 to 0.0346 (docs/stereo.md).
"""

from __future__ import annotations

import io
import logging
import math
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from stereo_depth_ros.images import bgr_to_tensor
from stereo_depth_ros.models.base import check_stereo_pair
from stereo_depth_ros.models.coarse_to_fine import NUM_STAGES, CoarseToFineStereoNet, load_weights
from stereo_depth_ros.device import resolve_device

LOGGER = logging.getLogger(__name__)
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_WEIGHTS_NAME = "coarse_to_fine_stereo.safetensors"
BACKENDS = ("auto", "torch", "onnx")
AUTO_WORKING_WIDTH = 1280
MAX_AUTO_SCALE = 2.0
MAX_INPUT_SCALE = 4.0


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
    """The trained weights shipped in the package (``stereo_depth_ros/weights/coarse_to_fine_stereo.safetensors``)."""
    return WEIGHTS_DIR / DEFAULT_WEIGHTS_NAME


class CoarseToFineEstimator:
    """Coarse-to-fine stereo network as a :class:`DisparityEstimator` (``estimate(left_bgr, right_bgr)``).

    Args:
        weights: safetensors file, or None for the packaged weights; or pass ``model`` instead.
        model: an already built network (takes precedence over ``weights``).
        device: "auto" (CUDA when present), "cpu" or "cuda".
        max_disparity: search range in pixels at input resolution (None: the one stored with the weights).
        max_stage: last stage to compute (0..3); earlier stops are cheaper.
        half: run in float16 (CUDA only; ignored on the CPU with a warning).
        backend: "auto" (onnxruntime on the CPU when installed, PyTorch otherwise), "torch" or "onnx".
        input_scale: None (auto, see :func:`working_scale`) or a fixed factor in (0, 4]. The pair is resized by it
            (bicubic when enlarging, area average when shrinking), the network runs at that size with the search
            range scaled with it, and each stage is resized back and its disparities divided by the horizontal
            factor. 1.0 runs the network on the pair as given.

    Raises:
        stereo_depth_ros.models.coarse_to_fine.WeightsError: if the weights file is missing or wrong.
        ValueError: for an invalid device, backend, stage or input scale.
    """

    name = "coarse-to-fine"

    def __init__(self, weights: str | Path | None = None, model: CoarseToFineStereoNet | None = None,
                 device: str = "auto", max_disparity: int | None = None, max_stage: int = NUM_STAGES - 1,
                 half: bool = False, backend: str = "auto", input_scale: float | None = None) -> None:
        check_input_scale(input_scale)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if not 0 <= max_stage < NUM_STAGES:
            raise ValueError(f"max_stage must be in 0..{NUM_STAGES - 1}, got {max_stage}")
        self.device = resolve_device(device)
        self.weights_path = None if model is not None else Path(weights or default_weights_path())
        if model is None:
            model = load_weights(self.weights_path, max_disparity=max_disparity)
        elif max_disparity is not None and max_disparity != model.max_disparity:
            model = _with_max_disparity(model, max_disparity)
        self.model = model.eval().to(self.device)
        self.half = bool(half and self.device.type == "cuda")
        if half and not self.half:
            warnings.warn("half precision needs CUDA; running in float32 on the CPU", stacklevel=2)
        if self.half:
            self.model = self.model.half()
        if backend == "auto":
            backend = "onnx" if self.device.type == "cpu" and _onnxruntime_available() else "torch"
        self.backend = backend
        self.max_stage = max_stage
        self.input_scale = input_scale
        self._sessions: dict[tuple[int, int, int, int], object] = {}
        self._working_models: dict[int, CoarseToFineStereoNet] = {self.model.max_disparity: self.model}

    @property
    def num_stages(self) -> int:
        """Number of maps :meth:`estimate` returns (``max_stage + 1``)."""
        return self.max_stage + 1

    @property
    def max_disparity(self) -> int:
        """Search range in pixels at input resolution."""
        return self.model.max_disparity

    def estimate(self, left_bgr: np.ndarray, right_bgr: np.ndarray, max_stage: int | None = None
                 ) -> list[np.ndarray]:
        """Disparity of every stage for a rectified uint8 BGR pair.

        The pair is first resized by :func:`working_scale` (``input_scale`` of the constructor); the returned maps
        are always at the input size.

        Returns:
            ``max_stage + 1`` arrays (H, W) float32, pixels at input resolution, coarse (stage 0) to fine. The
            network gives a value everywhere; no NaN unless the input had them.

        Raises:
            ValueError: for images that are not a same-size (H, W, 3) uint8 pair.
        """
        check_stereo_pair(left_bgr, right_bgr)
        stage = self.max_stage if max_stage is None else max_stage
        if not 0 <= stage < NUM_STAGES:
            raise ValueError(f"max_stage must be in 0..{NUM_STAGES - 1}, got {stage}")
        height, width = left_bgr.shape[:2]
        scale = working_scale(width, self.input_scale)
        work_height, work_width = max(1, round(height * scale)), max(1, round(width * scale))
        enlarge = scale > 1.0
        if (work_height, work_width) != (height, width):
            interpolation = cv2.INTER_CUBIC if enlarge else cv2.INTER_AREA
            left_bgr, right_bgr = (cv2.resize(image, (work_width, work_height), interpolation=interpolation)
                                   for image in (left_bgr, right_bgr))
        x_scale = work_width / width
        model = self._working_model(math.ceil(self.max_disparity * x_scale))
        outputs = self._run(model, bgr_to_tensor(left_bgr), bgr_to_tensor(right_bgr), stage)
        if (work_height, work_width) == (height, width):
            return outputs
        interpolation = cv2.INTER_AREA if enlarge else cv2.INTER_LINEAR
        return [cv2.resize(d, (width, height), interpolation=interpolation) / np.float32(x_scale) for d in outputs]

    def _run(self, model: CoarseToFineStereoNet, left: torch.Tensor, right: torch.Tensor, stage: int
             ) -> list[np.ndarray]:
        if self.backend == "onnx":
            key = (left.shape[-2], left.shape[-1], stage, model.max_disparity)
            if key not in self._sessions:
                self._sessions[key] = export_onnx_session(model, left.shape[-2], left.shape[-1], stage)
            outputs = self._sessions[key].run(None, {"left": left.numpy(), "right": right.numpy()})
            return [np.asarray(o[0, 0], dtype=np.float32) for o in outputs]  # no copy: fresh arrays per call
        dtype = torch.float16 if self.half else torch.float32
        with torch.inference_mode():
            outputs = model(left.to(self.device, dtype), right.to(self.device, dtype), stage)
        return [o[0, 0].float().cpu().numpy() for o in outputs]

    def _working_model(self, max_disparity: int) -> CoarseToFineStereoNet:
        """The network with its search range in pixels of the working size (shares no tensors with the original)."""
        if max_disparity not in self._working_models:
            self._working_models[max_disparity] = _with_max_disparity(self.model, max_disparity).to(
                self.device, torch.float16 if self.half else torch.float32).eval()
        return self._working_models[max_disparity]


class _Stages(torch.nn.Module):
    def __init__(self, model: CoarseToFineStereoNet, max_stage: int) -> None:
        super().__init__()
        self.model = model
        self.max_stage = max_stage

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model(left, right, self.max_stage))


def export_onnx_session(model: CoarseToFineStereoNet, height: int, width: int, max_stage: int):
    """Export the network for one input size to ONNX (in memory) and open an onnxruntime CPU session.

    Returns:
        ``onnxruntime.InferenceSession`` with inputs ``left``, ``right`` (1, 3, H, W) float32 and one output per
        stage (1, 1, H, W).
    """
    import onnxruntime

    cpu_model = model.float().cpu().eval()
    buffer = io.BytesIO()
    example = (torch.zeros(1, 3, height, width), torch.zeros(1, 3, height, width))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Stages(cpu_model, max_stage), example, buffer, opset_version=17,
                          input_names=["left", "right"],
                          output_names=[f"stage_{i}" for i in range(max_stage + 1)], dynamo=False)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    LOGGER.debug("exported ONNX graph for %dx%d, stages 0..%d", height, width, max_stage)
    return onnxruntime.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])


def _onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _with_max_disparity(model: CoarseToFineStereoNet, max_disparity: int) -> CoarseToFineStereoNet:
    config = dict(model.config, max_disparity=int(max_disparity))
    clone = CoarseToFineStereoNet(**config)
    clone.load_state_dict(model.state_dict())
    return clone
