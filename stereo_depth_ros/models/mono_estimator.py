"""The monocular depth estimator every single-image network of this package runs behind.

:class:`MonocularEstimator` wraps one ``torch.nn.Module`` (the light U-Net, the refinement CNNs, the sub-pixel
DispNet, ...) as an :class:`~stereo_depth_ros.models.base.Estimator` of input kind ``"image"`` and output kind
``"depth"``: ``predict(image_bgr) -> {"depth": (H, W) float32, ...}``. It

1. checks the image ((H, W, 3) uint8 BGR, OpenCV order) and turns it into a (1, 3, h, w) float32 RGB tensor in
   [0, 1] (:func:`stereo_depth_ros.images.bgr_to_tensor`);
2. resizes it to the network's working size (the *input size policy*, :func:`working_size`): a fixed ``input_size``,
   or a ``working_width`` keeping the aspect ratio, or the image's own size; both sides rounded to a multiple of
   ``size_multiple`` (the network's total down-sampling factor);
3. runs the module through :class:`~stereo_depth_ros.models.inference.NetworkRunner` (PyTorch, or onnxruntime on the
   CPU with the graph exported once per working size and cached on disk);
4. hands the raw outputs to the family's ``postprocess`` callable, which turns them into depth (metres when the
   model is metric, otherwise a relative depth whose scale must come from elsewhere: median scaling against GT, a
   ``depth_scale``, or alignment to stereo), optionally with more named maps;
5. resizes every (h, w) map back to (H, W) bilinearly.

The module takes the RGB tensor in [0, 1] and does its own normalisation, so that the ONNX graph is the whole
network.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import torch

from stereo_depth_ros.images import bgr_to_tensor, check_image
from stereo_depth_ros.models.base import Estimator, check_image_size
from stereo_depth_ros.models.inference import BACKENDS, NetworkRunner

DEPTH = "depth"  # the output kind of a monocular estimator (registry.OUTPUT_KINDS)
INPUT_NAMES = ("image",)

Postprocess = Callable[[list[np.ndarray], tuple[int, int]], "np.ndarray | dict[str, np.ndarray]"]


def round_to_multiple(value: float, multiple: int) -> int:
    """``value`` rounded to the nearest positive multiple of ``multiple`` (at least ``multiple``).

    Example:
        >>> round_to_multiple(250, 16), round_to_multiple(3, 16)
        (256, 16)
    """
    return max(multiple, int(round(value / multiple)) * multiple)


def working_size(height: int, width: int, input_size: tuple[int, int] | None = None,
                 working_width: int | None = None, size_multiple: int = 1) -> tuple[int, int]:
    """The (height, width) in pixels at which a network runs on a ``height`` x ``width`` image.

    Policy, first that applies: ``input_size`` (a fixed (height, width), used as given, each a multiple of
    ``size_multiple``); ``working_width`` (the image scaled to that width, aspect ratio kept); else the image's own
    size. Both sides are then rounded to the nearest multiple of ``size_multiple``.

    Args:
        height, width: the image size in pixels (> 0).
        input_size: a fixed network input (height, width) in pixels, or None.
        working_width: the network's input width in pixels when ``input_size`` is None, or None.
        size_multiple: the network's total down-sampling factor (16 for four 2x2 max-pools).

    Returns:
        ``(network_height, network_width)``, positive ints, multiples of ``size_multiple``.

    Raises:
        ValueError: for a non-positive size, or an ``input_size`` that is not a multiple of ``size_multiple``.

    Example:
        >>> working_size(480, 640, working_width=320, size_multiple=16)
        (240, 320)
        >>> working_size(288, 720, size_multiple=16)
        (288, 720)
        >>> working_size(1024, 1280, input_size=(256, 320), size_multiple=16)
        (256, 320)
    """
    check_image_size(height, width)
    check_size_multiple(size_multiple)
    if input_size is not None:
        check_input_size(input_size, size_multiple)
        return int(input_size[0]), int(input_size[1])
    if working_width is not None:
        check_working_width(working_width)
        scale = working_width / width
        return round_to_multiple(height * scale, size_multiple), round_to_multiple(working_width, size_multiple)
    return round_to_multiple(height, size_multiple), round_to_multiple(width, size_multiple)


def check_size_multiple(size_multiple: int) -> None:
    """Raise ValueError unless ``size_multiple`` is a positive int."""
    if isinstance(size_multiple, bool) or not isinstance(size_multiple, (int, np.integer)) or size_multiple <= 0:
        raise ValueError(f"size_multiple must be a positive number of pixels, got {size_multiple!r}")


def check_input_size(input_size, size_multiple: int = 1) -> None:
    """Raise ValueError unless ``input_size`` is a (height, width) pair of positive multiples of ``size_multiple``."""
    try:
        height, width = input_size
    except (TypeError, ValueError):
        raise ValueError(f"input_size must be (height, width) in pixels, got {input_size!r}") from None
    for label, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0 \
                or value % size_multiple:
            raise ValueError(f"input_size {label} must be a positive multiple of {size_multiple} pixels, "
                             f"got {value!r}")


def check_working_width(working_width: int) -> None:
    """Raise ValueError unless ``working_width`` is a positive int (pixels)."""
    if isinstance(working_width, bool) or not isinstance(working_width, (int, np.integer)) or working_width <= 0:
        raise ValueError(f"working_width must be a positive number of pixels, got {working_width!r}")


def first_channel(outputs: list[np.ndarray], image_size: tuple[int, int]) -> np.ndarray:
    """The default ``postprocess``: the first output's (1, 1, h, w) map as (h, w) float32, unchanged."""
    return np.asarray(outputs[0][0, 0], dtype=np.float32)


class MonocularEstimator(Estimator):
    """One monocular network as an :class:`~stereo_depth_ros.models.base.Estimator`: image in, depth out.

    Build it through the registry (``create_estimator("unet")``, ...); family modules construct it with their
    module and ``postprocess``.

    Args:
        name: the registered model name ("unet", "scrx", "dispnet-subpixel", ...).
        module: the network; ``forward(image)`` takes a (1, 3, h, w) float32 RGB tensor in [0, 1] and returns a
            tensor or a tuple of tensors (what ONNX export needs).
        postprocess: ``postprocess(outputs, (H, W)) -> depth`` or ``-> {"depth": depth, other: map, ...}``:
            ``outputs`` are the module's outputs as float32 NumPy arrays at the working size, ``(H, W)`` the input
            image's size in pixels (for a disparity that is a fraction of the image width, for example); each
            returned map is (h, w) at the working size (or already (H, W)). Default :func:`first_channel`.
        metric: whether the depth is in metres (True) or relative, known up to a scale (False).
        output_names: the module's outputs (ONNX graph names), default ``("output",)``.
        input_size: fixed working (height, width), or None (see :func:`working_size`).
        working_width: working width keeping the aspect ratio, or None (see :func:`working_size`).
        size_multiple: the network's total down-sampling factor; working sizes are multiples of it.
        depth_range: ``(min_m, max_m)`` the depth is clipped to after postprocessing (None: not clipped).
        backend: "auto" (onnxruntime on the CPU, PyTorch on CUDA), "torch" or "onnx".
        device: "auto", "cpu" or "cuda".
        half: float16 (CUDA with the torch backend only).
        weights_path: the weights file the module came from (recorded; its SHA-256 keys the ONNX cache).
        weights_sha256: its hex SHA-256, when already known.
        config: the module's configuration (JSON), part of the ONNX cache key.
        cache_dir: ONNX cache folder (None: the default).

    Attributes:
        metric: as given.
        backend, device: what runs the network.
        runner: the :class:`~stereo_depth_ros.models.inference.NetworkRunner`.
        model: the module (eval mode).

    Raises:
        ValueError: for an invalid backend, device, size policy, depth range or postprocess.

    Example:
        >>> class Half(torch.nn.Module):
        ...     def forward(self, image):
        ...         return image.mean(1, keepdim=True) * 0.5
        >>> estimator = MonocularEstimator("demo", Half(), backend="torch", size_multiple=4)
        >>> depth = estimator.estimate_depth(np.full((6, 10, 3), 255, np.uint8))
        >>> depth.shape, depth.dtype, float(depth.max())
        ((6, 10), dtype('float32'), 0.5)
    """

    def __init__(self, name: str, module: torch.nn.Module, postprocess: Postprocess | None = None,
                 metric: bool = False, output_names: Sequence[str] = ("output",),
                 input_size: tuple[int, int] | None = None, working_width: int | None = None,
                 size_multiple: int = 1, depth_range: tuple[float, float] | None = None, backend: str = "auto",
                 device: str = "auto", half: bool = False, weights_path: str | Path | None = None,
                 weights_sha256: str | None = None, config: dict | None = None,
                 cache_dir: str | Path | None = None) -> None:
        if not name or not isinstance(name, str):
            raise ValueError(f"a monocular estimator needs a non-empty name, got {name!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if postprocess is not None and not callable(postprocess):
            raise ValueError(f"postprocess must be callable, got {postprocess!r}")
        check_size_multiple(size_multiple)
        if input_size is not None:
            check_input_size(input_size, size_multiple)
        if working_width is not None:
            check_working_width(working_width)
        if depth_range is not None:
            low, high = depth_range
            if not (math.isfinite(low) and 0 <= low < high):
                raise ValueError(f"depth_range must be (min_m, max_m) with 0 <= min_m < max_m, got {depth_range!r}")
        self.name = name
        self.metric = bool(metric)
        self.postprocess = postprocess or first_channel
        self.input_size = None if input_size is None else (int(input_size[0]), int(input_size[1]))
        self.working_width = working_width
        self.size_multiple = int(size_multiple)
        self.depth_range = depth_range
        self.weights_path = None if weights_path is None else Path(weights_path)
        if weights_sha256 is None and self.weights_path is not None:
            from stereo_depth_ros.models.weights import sha256_file

            weights_sha256 = sha256_file(self.weights_path)
        self.runner = NetworkRunner(module, INPUT_NAMES, list(output_names), backend=backend, device=device,
                                    half=half, weights_sha256=weights_sha256,
                                    config=dict(config or {}, name=name), cache_dir=cache_dir)
        self.backend, self.device, self.model = self.runner.backend, self.runner.device, self.runner.module

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) at which the network runs for a ``height`` x ``width`` image (:func:`working_size`
        with this estimator's policy)."""
        return working_size(height, width, self.input_size, self.working_width, self.size_multiple)

    def prepare(self, height: int, width: int) -> None:
        """Build the backend for ``height`` x ``width`` images (ONNX export or cache load) and run it once on a
        black image, so the first frame does not wait.

        Raises:
            ValueError: for a size that is not positive.
        """
        network_height, network_width = self.working_size(height, width)
        self.runner.run(torch.zeros(1, 3, network_height, network_width))

    def predict(self, image_bgr: np.ndarray) -> dict[str, np.ndarray]:
        """Depth (and any other map the family's ``postprocess`` gives) for one image.

        Args:
            image_bgr: (H, W, 3) uint8 BGR image (OpenCV order).

        Returns:
            ``{"depth": (H, W) float32, ...}``: depth in metres when :attr:`metric`, else relative depth (positive,
            known up to one scale factor per image); every other map (H, W) float32 as well.

        Raises:
            ValueError: for an image that is not (H, W, 3) uint8, or a postprocess that gives no ``"depth"`` map.
        """
        check_image(image_bgr)
        height, width = image_bgr.shape[:2]
        network_height, network_width = self.working_size(height, width)
        resized = image_bgr
        if (network_height, network_width) != (height, width):
            shrink = network_height * network_width < height * width
            resized = cv2.resize(image_bgr, (network_width, network_height),
                                 interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        outputs = self.runner.run(bgr_to_tensor(resized))
        result = self.postprocess(outputs, (height, width))
        if not isinstance(result, dict):
            result = {DEPTH: result}
        if DEPTH not in result:
            raise ValueError(f"the postprocess of model {self.name!r} gave no 'depth' map (keys {sorted(result)})")
        maps = {}
        for key, value in result.items():
            value = np.asarray(value, dtype=np.float32)
            if value.ndim != 2:
                raise ValueError(f"the postprocess of model {self.name!r} gave {key!r} of shape {value.shape}, "
                                 f"expected (h, w)")
            if value.shape != (height, width):
                value = cv2.resize(value, (width, height), interpolation=cv2.INTER_LINEAR)
            maps[key] = value
        if self.depth_range is not None:
            maps[DEPTH] = np.clip(maps[DEPTH], *self.depth_range)
        return maps

    def estimate_depth(self, image_bgr: np.ndarray) -> np.ndarray:
        """``predict(image_bgr)["depth"]``: (H, W) float32, metres when :attr:`metric`, else relative."""
        return self.predict(image_bgr)[DEPTH]


MIN_RELATIVE_DEPTH = 1e-3  # floor of the supervised networks' relative depth (AbsRel and log metrics stay finite)
DEFAULT_WORKING_WIDTH = 320  # the width the supervised networks were trained at (training.mono_supervised)


def relative_depth(outputs: list[np.ndarray], image_size: tuple[int, int]) -> np.ndarray:
    """The supervised networks' ``postprocess``: their sigmoid output (1, 1, h, w), normalised relative depth in
    [0, 1], as (h, w) float32 clipped to [:data:`MIN_RELATIVE_DEPTH`, 1] (a relative depth: one unknown scale per
    image)."""
    return np.clip(np.asarray(outputs[0][0, 0], dtype=np.float32), MIN_RELATIVE_DEPTH, 1.0)


def build_supervised_estimator(name: str, architecture: str, build: Callable[[dict], torch.nn.Module],
                               size_multiple: int, default_weights: Path | None, weights: str | Path | None = None,
                               untrained_config: dict | None = None, backend: str = "auto", device: str = "auto",
                               working_width: int | None = DEFAULT_WORKING_WIDTH,
                               input_size: tuple[int, int] | None = None,
                               cache_dir: str | Path | None = None) -> MonocularEstimator:
    """A :class:`MonocularEstimator` for one of the supervised networks (light U-Net, original U-Net, refinement
    CNNs), which predict relative depth (``metric=False``).

    Args:
        name: the registry name. architecture: the weights' architecture name. build: ``build(config) -> module``.
        size_multiple: the network's down-sampling factor.
        default_weights: the packaged weights (None: none packaged).
        weights: a weights file (None: ``default_weights``).
        untrained_config: when no weights file is given or packaged, build this configuration with random
            weights (seed 0), for the parameter and speed comparisons only (the original U-Net); None: refuse.
        backend, device, working_width, input_size, cache_dir: as :class:`MonocularEstimator` (working width 320,
            the training scale, by default).

    Raises:
        stereo_depth_ros.models.weights.WeightsError: for a missing or wrong weights file (naming it, and saying
            how to train it when it is not packaged).
        ValueError: for invalid options.
    """
    from stereo_depth_ros.models.weights import WeightsError, load_weights

    path = Path(weights) if weights is not None else default_weights
    if path is None or (weights is None and not path.is_file()):
        if untrained_config is None:
            raise WeightsError(f"model {name!r} has no packaged weights{f' ({path})' if path else ''}; train them "
                               f"with `stereo-depth-ros train-mono --model {name} --out W.safetensors` and pass "
                               f"weights=W.safetensors")
        torch.manual_seed(0)
        module, config = build(dict(untrained_config)), dict(untrained_config, untrained=True)
        path = None
    else:
        module, metadata = load_weights(path, architecture, build)
        config = getattr(module, "config", {})
    return MonocularEstimator(name, module, relative_depth, metric=False, input_size=input_size,
                              working_width=None if input_size is not None else working_width,
                              size_multiple=size_multiple, backend=backend, device=device, weights_path=path,
                              config=config, cache_dir=cache_dir)
