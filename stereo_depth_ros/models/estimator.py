"""The coarse-to-fine network as a :class:`~stereo_depth_ros.models.base.StereoEstimator` (registered as
``"coarse-to-fine"`` in :mod:`stereo_depth_ros.models.registry`).

Runs through :class:`~stereo_depth_ros.models.inference.NetworkRunner`: the PyTorch model, or on the CPU (by
default) the same model exported to ONNX and run by onnxruntime, which we measured several times faster than eager
PyTorch for this network (docs/benchmarks.md). The ONNX graph is exported once per input size and stage count and
cached on disk (keyed by the weights' SHA-256); :meth:`CoarseToFineEstimator.prepare` builds it before the first
frame. Both back-ends give the same disparities to within 1e-3 px.

:meth:`CoarseToFineEstimator.estimate_with_confidence` adds a per-pixel confidence in [0, 1] of the last stage
(default :data:`DEFAULT_CONFIDENCE`: the last cost volume's peak probability times a photometric score); the
measures and how they were compared are in docs/stereo.md ("Confidence").

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
from stereo_depth_ros.models import confidence as confidence_maps_module
from stereo_depth_ros.models.base import StereoEstimator, resolve_stage
from stereo_depth_ros.models.coarse_to_fine import NUM_STAGES, CoarseToFineStereoNet, load_weights, upsample_peak
from stereo_depth_ros.models.inference import BACKENDS, NetworkRunner
from stereo_depth_ros.models.weights import sha256_file

LOGGER = logging.getLogger(__name__)
AUTO_WORKING_WIDTH = 1280
MAX_AUTO_SCALE = 2.0
MAX_INPUT_SCALE = 4.0
INPUT_NAMES = ("left", "right")
#: Confidence measures of :meth:`CoarseToFineEstimator.confidence_maps` (docs/stereo.md, "Confidence"):
#: ``cost-peak``: peak probability of the last cost volume run (stage 2 for stages 2 and 3; stage 0 or 1 when the
#: network stops there); ``coarse-peak``: that of the full-range stage 0; ``peak-product``: the product of every
#: cost volume's peak; ``photometric``: :func:`~stereo_depth_ros.models.confidence.photometric_confidence` of the
#: final disparity; ``left-right``: :func:`~stereo_depth_ros.models.confidence.left_right_confidence` against the
#: network run on the mirrored, swapped pair (a second pass); ``peak-photometric``: ``cost-peak`` x
#: ``photometric``.
CONFIDENCE_METHODS = ("cost-peak", "coarse-peak", "peak-product", "photometric", "left-right", "peak-photometric")
_PEAK_METHODS = ("cost-peak", "coarse-peak", "peak-product", "peak-photometric")
#: The measure :meth:`CoarseToFineEstimator.estimate_with_confidence` uses by default (chosen by the area under
#: the sparsification curve on the GT sets, weighing its run time; docs/stereo.md, "Confidence").
DEFAULT_CONFIDENCE = "peak-photometric"


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
        self._runners: dict[tuple, NetworkRunner] = {(self.model.max_disparity, self.max_stage): first}
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
        return self._estimate(left_bgr, right_bgr, stage, False)[0]

    def estimate_with_confidence(self, left_bgr: np.ndarray, right_bgr: np.ndarray, max_stage: int | None = None,
                                 method: str | None = None) -> tuple[list[np.ndarray], np.ndarray]:
        """:meth:`estimate` plus a per-pixel confidence of the last stage computed.

        Args:
            left_bgr, right_bgr, max_stage: as :meth:`estimate`.
            method: one of :data:`CONFIDENCE_METHODS`, None for :data:`DEFAULT_CONFIDENCE`.

        Returns:
            ``(disparities, confidence)``: ``disparities`` as :meth:`estimate` (the same values); ``confidence``
            (H, W) float32 in [0, 1] at the input resolution, NaN-free, 0 where the last disparity is invalid or
            its match lies outside the right image.

        Raises:
            ValueError: as :meth:`estimate`, or for an unknown method (listing the known ones).
        """
        method = DEFAULT_CONFIDENCE if method is None else method
        disparities, maps = self.confidence_maps(left_bgr, right_bgr, max_stage, (method,))
        return disparities, maps[method]

    def confidence_maps(self, left_bgr: np.ndarray, right_bgr: np.ndarray, max_stage: int | None = None,
                        methods: tuple[str, ...] = CONFIDENCE_METHODS
                        ) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
        """The disparities of :meth:`estimate` and several confidence measures of the last one from one run.

        The cost-volume peaks come from the same network pass as the disparities (an ONNX graph with the peaks as
        extra outputs, cached apart from the plain one); ``left-right`` adds a second pass on the mirrored, swapped
        pair. Used by ``stereo-depth-ros eval-confidence`` to compare the measures.

        Args:
            left_bgr, right_bgr, max_stage: as :meth:`estimate`.
            methods: names from :data:`CONFIDENCE_METHODS` (at least one).

        Returns:
            ``(disparities, {method: confidence})``, each confidence as :meth:`estimate_with_confidence`.

        Raises:
            ValueError: as :meth:`estimate`, or for no or unknown methods.
        """
        unknown = [m for m in methods if m not in CONFIDENCE_METHODS]
        if not methods or unknown:
            raise ValueError(f"confidence method(s) {unknown or 'none given'}: choose from "
                             f"{', '.join(CONFIDENCE_METHODS)}")
        check_stereo_pair(left_bgr, right_bgr)
        stage = self.max_stage if max_stage is None else resolve_stage(max_stage, NUM_STAGES, self.name)
        with_peaks = any(m in _PEAK_METHODS for m in methods)
        disparities, peaks = self._estimate(left_bgr, right_bgr, stage, with_peaks)
        final = disparities[-1]
        maps: dict[str, np.ndarray] = {}  # peaks[i]: stage i's peak at the input size, upsampled when first used
        photometric = None
        if "photometric" in methods or "peak-photometric" in methods:
            photometric = confidence_maps_module.photometric_confidence(left_bgr, right_bgr, final)
        for method in methods:
            if method == "cost-peak":
                raw = peaks[-1]
            elif method == "coarse-peak":
                raw = peaks[0]
            elif method == "peak-product":
                raw = np.prod([peaks[i] for i in range(len(peaks))], axis=0)
            elif method == "photometric":
                raw = photometric
            elif method == "peak-photometric":
                raw = peaks[-1] * photometric
            else:  # left-right: the right view's disparity from the mirrored, swapped pair
                mirrored = self._estimate(np.ascontiguousarray(right_bgr[:, ::-1]),
                                          np.ascontiguousarray(left_bgr[:, ::-1]), stage, False)[0][-1]
                raw = confidence_maps_module.left_right_confidence(final, np.ascontiguousarray(mirrored[:, ::-1]))
            maps[method] = confidence_maps_module.finalize_confidence(raw, final)
        return disparities, maps

    def _estimate(self, left_bgr: np.ndarray, right_bgr: np.ndarray, stage: int, with_peaks: bool
                  ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Disparities (and with ``with_peaks`` the cost-volume peaks) at the input size for a checked pair."""
        height, width = left_bgr.shape[:2]
        work_height, work_width, x_scale = self._working_size(height, width)
        enlarge = self.working_scale(width) > 1.0
        if (work_height, work_width) != (height, width):
            interpolation = cv2.INTER_CUBIC if enlarge else cv2.INTER_AREA
            left_bgr, right_bgr = (cv2.resize(image, (work_width, work_height), interpolation=interpolation)
                                   for image in (left_bgr, right_bgr))
        model = self._working_model(math.ceil(self.max_disparity * x_scale))
        inputs = (model, bgr_to_tensor(left_bgr), bgr_to_tensor(right_bgr), stage)
        outputs = self._run(*inputs, True) if with_peaks else self._run(*inputs)
        disparities, peaks = outputs[:stage + 1], outputs[stage + 1:]
        if (work_height, work_width) == (height, width):
            return disparities, _LazyPeaks(peaks, work_height, work_width, None)
        interpolation = cv2.INTER_AREA if enlarge else cv2.INTER_LINEAR
        return ([cv2.resize(d, (width, height), interpolation=interpolation) / np.float32(x_scale)
                 for d in disparities], _LazyPeaks(peaks, work_height, work_width, (width, height, interpolation)))

    def _working_size(self, height: int, width: int) -> tuple[int, int, float]:
        """``(height, width, x_scale)`` at which the network runs for a ``height`` x ``width`` pair."""
        scale = working_scale(width, self.input_scale)
        work_height, work_width = max(1, round(height * scale)), max(1, round(width * scale))
        return work_height, work_width, work_width / width

    def _run(self, model: CoarseToFineStereoNet, left: torch.Tensor, right: torch.Tensor, stage: int,
             with_peaks: bool = False) -> list[np.ndarray]:
        outputs = self._runner(model, stage, with_peaks).run(left, right)
        return [np.asarray(output[0, 0], dtype=np.float32) for output in outputs]  # no copy: fresh arrays per call

    def _make_runner(self, model: CoarseToFineStereoNet, stage: int, with_peaks: bool = False) -> NetworkRunner:
        names = [f"stage_{i}" for i in range(stage + 1)]
        config = dict(model.config, max_stage=stage)
        if with_peaks:  # another graph (more outputs): its own cache key
            names += [f"peak_{i}" for i in range(model.cost_volume_stages(stage))]
            config["confidence_outputs"] = "cost-volume-peaks-at-stage-scale"
        return NetworkRunner(_Stages(model, stage, with_peaks), INPUT_NAMES, names,
                             backend=self._backend_option, device=self._device_option, half=self._half_option,
                             weights_sha256=self._weights_sha256, config=config, cache_dir=self._cache_dir)

    def _runner(self, model: CoarseToFineStereoNet, stage: int, with_peaks: bool = False) -> NetworkRunner:
        key = (model.max_disparity, stage) if not with_peaks else (model.max_disparity, stage, "peaks")
        if key not in self._runners:
            self._runners[key] = self._make_runner(model, stage, with_peaks)
        return self._runners[key]

    def _working_model(self, max_disparity: int) -> CoarseToFineStereoNet:
        """The network with its search range in pixels of the working size (shares no tensors with the original)."""
        if max_disparity not in self._working_models:
            self._working_models[max_disparity] = _with_max_disparity(self.model, max_disparity).to(
                self.device, torch.float16 if self.half else torch.float32).eval()
        return self._working_models[max_disparity]


class _LazyPeaks:
    """The cost-volume peaks of one run, each upsampled to the input size only when first indexed (the default
    measure needs the last one alone)."""

    def __init__(self, peaks: list[np.ndarray], work_height: int, work_width: int, resize) -> None:
        self._raw, self._size, self._resize = peaks, (work_height, work_width), resize
        self._done: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._raw)

    def __getitem__(self, index: int) -> np.ndarray:
        index = range(len(self._raw))[index]
        if index not in self._done:
            peak = upsample_peak(self._raw[index], *self._size)
            if self._resize is not None:
                width, height, interpolation = self._resize
                peak = cv2.resize(peak, (width, height), interpolation=interpolation)
            self._done[index] = peak
        return self._done[index]


class _Stages(torch.nn.Module):
    """The network up to ``max_stage`` with tensor-only inputs and a tuple of outputs (what ONNX export needs);
    with ``with_peaks`` the cost-volume peak confidences follow the disparities."""

    def __init__(self, model: CoarseToFineStereoNet, max_stage: int, with_peaks: bool = False) -> None:
        super().__init__()
        self.model = model
        self.max_stage = max_stage
        self.with_peaks = with_peaks

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.with_peaks:
            disparities, peaks = self.model.forward_with_confidence(left, right, self.max_stage)
            return tuple(disparities) + tuple(peaks)
        return tuple(self.model(left, right, self.max_stage))


def _with_max_disparity(model: CoarseToFineStereoNet, max_disparity: int) -> CoarseToFineStereoNet:
    config = dict(model.config, max_disparity=int(max_disparity))
    clone = CoarseToFineStereoNet(**config)
    clone.load_state_dict(model.state_dict())
    return clone
