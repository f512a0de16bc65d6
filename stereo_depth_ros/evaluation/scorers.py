"""Pluggable scorers: one frame's outputs and ground truth in (NumPy arrays), a dict of metrics out.

The replay (:mod:`stereo_depth_ros.ros.replay`) decodes each recorded output and ground-truth message into a
named array and hands them to the scorers its frame spec names; a scorer knows nothing about bags or ROS. A new
family adds a scorer here with :func:`register_scorer` and names it in its frame spec; the replay does not change.

Array names (the keys of ``outputs`` and ``ground_truth``) and their conventions:

- ``"disparity"``: (H, W) float32 *image* disparity ``d = x_left - x_right`` in pixels of the left image, NaN
  where invalid (see :mod:`stereo_depth_ros.geometry`).
- ``"depth"``: (H, W) float32 depth in metres; NaN, ``+inf`` and ``-inf`` (REP-117's no measurement, too far and
  too near) are all invalid here.
- ``"mask"``: (H, W) integer class labels.
- ``"left_image"``, ``"right_image"``: (H, W, 3) uint8 BGR images of the left and right view (a super-resolved pair
  and its high-resolution reference).
- ``"pseudo_rgb_image"``, ``"reference_image"``: (H, W, 3) uint8 BGR, a pseudo-RGB image translated from NIR and
  the real RGB aligned to it; ``"valid_mask"``: (H, W) bool, where the reference has data.

Registered now: ``"disparity-depth"`` (:class:`DisparityDepthScorer`), ``"mono-depth"``
(:class:`MonoDepthScorer`, the monodepth2 protocol), ``"mask-iou"`` (:class:`MaskIoUScorer`, instrument masks),
``"super-resolution"`` (:class:`SuperResolutionScorer`, PSNR and SSIM as iPASSR) and ``"cross-modal"``
(:class:`CrossModalScorer`, masked PSNR, SSIM and angular colour error of NIR-to-RGB translation).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from stereo_depth_ros.evaluation import metrics
from stereo_depth_ros.geometry import StereoCameraModel


class Scorer(ABC):
    """Scores one frame. Subclasses set the class attributes and implement :meth:`score`.

    Attributes:
        name: registry name, e.g. ``"disparity-depth"``.
        output_kinds: array names of the node's outputs it can score (any subset may be present).
        ground_truth_kinds: array names of ground truth it accepts (one is enough).
        metric_labels: metric key -> human-readable label with its unit, in report order.
    """

    name: str = ""
    output_kinds: tuple[str, ...] = ()
    ground_truth_kinds: tuple[str, ...] = ()
    metric_labels: dict[str, str] = {}

    @abstractmethod
    def score(self, outputs: Mapping[str, np.ndarray], ground_truth: Mapping[str, np.ndarray],
              camera: StereoCameraModel | None) -> dict[str, float | None]:
        """Metrics of one frame.

        Args:
            outputs: array name -> array, the node's outputs of this frame (see the module doc).
            ground_truth: array name -> array, the frame's ground truth.
            camera: the stereo camera model of the frame (None when the data has none).

        Returns:
            metric key -> value (None or nan when it cannot be computed, e.g. no valid pixel).

        Raises:
            ValueError: for arrays of mismatched shapes, or when a needed array or the camera is missing.
        """

    def summarise(self, rows: Sequence[Mapping[str, float | None]]) -> dict[str, float | None]:
        """Means over frames of every metric in :attr:`metric_labels` (frames where it is None or nan skipped;
        None when no frame has it), rounded to 4 decimals."""
        summary: dict[str, float | None] = {}
        for key in self.metric_labels:
            values = [row[key] for row in rows if row.get(key) is not None and math.isfinite(row[key])]
            summary[key] = round(float(np.mean(values)), 4) if values else None
        return summary


class DisparityDepthScorer(Scorer):
    """Disparity and depth against ground-truth depth (or disparity), with the stereo camera model.

    From ``outputs["disparity"]`` (image disparity, px) against the ground-truth image disparity
    (``camera.disparity_from_depth(gt depth)`` = ``fx B / Z - (cx_right - cx)``, or ``ground_truth["disparity"]``):
    ``epe_px``, ``bad2_pct``, ``d1_pct``, ``density_pct`` (:func:`stereo_depth_ros.evaluation.metrics.stereo_metrics`).

    From ``outputs["depth"]`` (metres) against the ground-truth depth (``ground_truth["depth"]``, or
    ``camera.depth_from_disparity(gt disparity)``), over pixels where both are finite and > 0:
    ``mae_mm = 1000 mean |Z - Z_gt|``, ``rmse_mm = 1000 sqrt(mean (Z - Z_gt)^2)``, ``depth_density_pct`` (share
    of ground-truth pixels with a depth) and ``depth_median_ratio = median(Z / Z_gt)`` (1 for a right scale; a depth
    in millimetres gives 1000, a wrong baseline or ``doffs`` moves it away from 1).
    """

    name = "disparity-depth"
    output_kinds = ("disparity", "depth")
    ground_truth_kinds = ("depth", "disparity")
    metric_labels = {
        "mae_mm": "depth MAE (mm)",
        "rmse_mm": "depth RMSE (mm)",
        "depth_median_ratio": "median of depth / GT depth",
        "depth_density_pct": "depth density (% of GT pixels)",
        "epe_px": "disparity EPE (px)",
        "bad2_pct": "bad 2 px (%)",
        "d1_pct": "D1 (%)",
        "density_pct": "disparity density (% of GT pixels)",
    }

    def score(self, outputs: Mapping[str, np.ndarray], ground_truth: Mapping[str, np.ndarray],
              camera: StereoCameraModel | None) -> dict[str, float | None]:
        """See the class doc; metrics whose output is absent are left out.

        Raises:
            ValueError: without ground-truth depth or disparity, without a camera model when a conversion
                between depth and disparity is needed, or for arrays whose shapes differ.
        """
        gt_depth = ground_truth.get("depth")
        gt_disparity = ground_truth.get("disparity")
        if gt_depth is None and gt_disparity is None:
            raise ValueError(f"the {self.name} scorer needs ground-truth 'depth' (m) or 'disparity' (px), got "
                             f"{sorted(ground_truth) or 'none'}")
        result: dict[str, float | None] = {}
        if "disparity" in outputs:
            if gt_disparity is None:
                gt_disparity = self._camera(camera, "ground-truth depth to disparity").disparity_from_depth(gt_depth)
            disparity = _array(outputs["disparity"], "output 'disparity'")
            scores = metrics.stereo_metrics(disparity, _array(gt_disparity, "ground-truth disparity"))
            result.update({key: scores[key] for key in ("epe_px", "bad2_pct", "d1_pct", "density_pct")})
        if "depth" in outputs:
            if gt_depth is None:
                gt_depth = self._camera(camera, "ground-truth disparity to depth").depth_from_disparity(gt_disparity)
            result.update(depth_errors(_array(outputs["depth"], "output 'depth'"),
                                       _array(gt_depth, "ground-truth depth")))
        return result

    def _camera(self, camera: StereoCameraModel | None, purpose: str) -> StereoCameraModel:
        if camera is None:
            raise ValueError(f"the {self.name} scorer needs the stereo camera model (camera_info) for {purpose}")
        return camera


def depth_errors(depth: np.ndarray, gt_depth: np.ndarray) -> dict[str, float]:
    """Depth errors of a predicted depth map against the ground truth.

    Args:
        depth: (H, W) predicted depth in metres; NaN, +-inf (REP-117) and values <= 0 are invalid.
        gt_depth: (H, W) ground-truth depth in metres; the same values are unknown.

    Returns:
        ``{"mae_mm", "rmse_mm", "depth_median_ratio", "depth_density_pct"}`` over the pixels where both are valid
        (nan when there is none; density nan when the ground truth has no valid pixel).

    Raises:
        ValueError: if the shapes differ or are not 2-D.
    """
    depth = np.asarray(depth, dtype=np.float64)
    gt_depth = np.asarray(gt_depth, dtype=np.float64)
    if depth.ndim != 2 or depth.shape != gt_depth.shape:
        raise ValueError(f"depth {depth.shape} and ground-truth depth {gt_depth.shape} must be (H, W) of the same "
                         f"size")
    with np.errstate(invalid="ignore"):
        gt_valid = np.isfinite(gt_depth) & (gt_depth > 0)
        both = gt_valid & np.isfinite(depth) & (depth > 0)
    count = int(np.count_nonzero(gt_valid))
    density = float(100.0 * np.count_nonzero(both) / count) if count else math.nan
    if not np.any(both):
        return {"mae_mm": math.nan, "rmse_mm": math.nan, "depth_median_ratio": math.nan,
                "depth_density_pct": density}
    difference = depth[both] - gt_depth[both]
    return {"mae_mm": float(1000.0 * np.abs(difference).mean()),
            "rmse_mm": float(1000.0 * np.sqrt((difference ** 2).mean())),
            "depth_median_ratio": float(np.median(depth[both] / gt_depth[both])),
            "depth_density_pct": density}


def _array(value: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 2:
        raise ValueError(f"{what} must be an (H, W) array, got shape {array.shape}")
    return array.astype(np.float32, copy=False)


# ----------------------------------------------------------------------------------------------- registry

SCORERS: dict[str, Callable[..., Scorer]] = {}
"""Registry: scorer name -> factory ``(**options) -> Scorer``."""


def register_scorer(name: str, factory: Callable[..., Scorer]) -> None:
    """Register a scorer factory under ``name`` (a class or any callable returning a :class:`Scorer`).

    Raises:
        ValueError: if ``name`` is empty or already registered.
    """
    if not name:
        raise ValueError("a scorer needs a name")
    if name in SCORERS:
        raise ValueError(f"a scorer named {name!r} is already registered")
    SCORERS[name] = factory


def scorer_names() -> list[str]:
    """The registered scorer names, sorted."""
    return sorted(SCORERS)


def create_scorer(name: str, **options) -> Scorer:
    """A new scorer by name.

    Raises:
        ValueError: for an unknown name, listing the registered ones.
    """
    if name not in SCORERS:
        raise ValueError(f"unknown scorer {name!r}; registered: {', '.join(scorer_names()) or 'none'}")
    return SCORERS[name](**options)


register_scorer(DisparityDepthScorer.name, DisparityDepthScorer)


class MonoDepthScorer(Scorer):
    """A monocular depth map against GT depth with the monodepth2 / AF-SfMLearner protocol
    (:func:`stereo_depth_ros.evaluation.depth_metrics.depth_metrics`).

    From ``outputs["depth"]`` (metres; NaN and +-inf invalid) against ``ground_truth["depth"]`` (or
    ``camera.depth_from_disparity(ground_truth["disparity"])``): ``abs_rel``, ``sq_rel``, ``rmse_m``,
    ``rmse_log``, ``delta1``, ``scale`` (median GT / median depth: 1 for a right unit) and ``density_pct``.

    Args:
        median_scaling: scale each frame's depth by its median ratio first (scale-free models); default False:
            the node publishes metres, and that is what is scored.
        min_depth_m, max_depth_m: the evaluated range (metres; None: each frame's largest GT depth).
    """

    name = "mono-depth"
    output_kinds = ("depth",)
    ground_truth_kinds = ("depth", "disparity")
    metric_labels = {
        "abs_rel": "AbsRel",
        "sq_rel": "SqRel (m)",
        "rmse_m": "RMSE (m)",
        "rmse_log": "RMSE log",
        "delta1": "delta < 1.25",
        "scale": "median GT / median depth",
        "density_pct": "depth density (% of GT pixels)",
    }

    def __init__(self, median_scaling: bool = False, min_depth_m: float = 1e-3,
                 max_depth_m: float | None = None) -> None:
        self.median_scaling = bool(median_scaling)
        self.min_depth_m = min_depth_m
        self.max_depth_m = max_depth_m

    def score(self, outputs: Mapping[str, np.ndarray], ground_truth: Mapping[str, np.ndarray],
              camera: StereoCameraModel | None) -> dict[str, float | None]:
        """See the class doc.

        Raises:
            ValueError: without a ``depth`` output, without GT depth (or GT disparity and a camera), or for arrays
                whose shapes differ.
        """
        from stereo_depth_ros.evaluation.depth_metrics import depth_metrics

        if "depth" not in outputs:
            raise ValueError(f"the {self.name} scorer needs the output 'depth' (m), got {sorted(outputs) or 'none'}")
        gt_depth = ground_truth.get("depth")
        if gt_depth is None:
            if ground_truth.get("disparity") is None or camera is None:
                raise ValueError(f"the {self.name} scorer needs ground-truth 'depth' (m), or 'disparity' (px) with "
                                 f"the stereo camera model")
            gt_depth = camera.depth_from_disparity(ground_truth["disparity"])
        row = depth_metrics(_array(outputs["depth"], "output 'depth'"), _array(gt_depth, "ground-truth depth"),
                            self.min_depth_m, self.max_depth_m, median_scaling=self.median_scaling)
        return {key: row[key] for key in self.metric_labels}


register_scorer(MonoDepthScorer.name, MonoDepthScorer)


class MaskIoUScorer(Scorer):
    """An instrument mask against a ground-truth mask (issue 13): per-frame binary IoU and Dice
    (:func:`stereo_depth_ros.evaluation.segmentation_metrics.iou_dice`: instrument = class id > 0; a frame with an
    empty truth and an empty prediction scores 1; ground-truth value 255 = no label, left out).

    Arrays: ``outputs["mask"]`` and ``ground_truth["mask"]``, (H, W) integer class ids (0 background); a ground
    truth of 0/255 (binary255 coding) is read as 0 background / 255 instrument when it holds no other value.
    """

    name = "mask-iou"
    output_kinds = ("mask",)
    ground_truth_kinds = ("mask",)
    metric_labels = {"iou": "binary IoU", "dice": "binary Dice", "instrument_pct": "instrument pixels (% predicted)"}

    def score(self, outputs: Mapping[str, np.ndarray], ground_truth: Mapping[str, np.ndarray],
              camera: StereoCameraModel | None) -> dict[str, float | None]:
        """See the class doc.

        Raises:
            ValueError: without a ``mask`` output or ground truth, or for shapes that differ.
        """
        from stereo_depth_ros.evaluation.segmentation_metrics import iou_dice

        if "mask" not in outputs or "mask" not in ground_truth:
            raise ValueError(f"the {self.name} scorer needs the output 'mask' and a ground-truth 'mask', got outputs "
                             f"{sorted(outputs) or 'none'} and ground truth {sorted(ground_truth) or 'none'}")
        prediction, truth = np.asarray(outputs["mask"]), np.asarray(ground_truth["mask"])
        if prediction.shape != truth.shape:
            raise ValueError(f"mask {prediction.shape} and ground-truth mask {truth.shape} differ in shape")
        binary255 = set(np.unique(truth).tolist()) <= {0, 255}
        instrument = truth == 255 if binary255 else (truth > 0) & (truth != 255)
        valid = None if binary255 else truth != 255
        iou, dice = iou_dice(prediction > 0, instrument, valid)
        return {"iou": iou, "dice": dice, "instrument_pct": 100.0 * float(np.mean(prediction > 0))}


register_scorer(MaskIoUScorer.name, MaskIoUScorer)


class SuperResolutionScorer(Scorer):
    """A super-resolved stereo pair against the high-resolution (HR) reference pair (issue 12): PSNR (dB) on RGB in
    [0, 1] without a Y channel, and SSIM, per view and their mean ``(left + right) / 2``, as iPASSR reports them
    (Wang et al., CVPRW 2021, section 4.1; :mod:`stereo_depth_ros.evaluation.sr_metrics`, the functions
    ``eval-sr`` uses). Both metrics treat the three channels alike, so BGR order gives the RGB values.

    Arrays: ``outputs["left_image"]`` / ``outputs["right_image"]`` and ``ground_truth["left_image"]`` /
    ``ground_truth["right_image"]``, (H, W, 3) uint8 BGR of the same size per view. A view without output or
    reference is left out (None), and the means need both views.
    """

    name = "super-resolution"
    output_kinds = ("left_image", "right_image")
    ground_truth_kinds = ("left_image", "right_image")
    metric_labels = {
        "psnr_db": "PSNR, (left + right) / 2 (dB)",
        "psnr_left_db": "PSNR left (dB)",
        "psnr_right_db": "PSNR right (dB)",
        "ssim": "SSIM, (left + right) / 2",
        "ssim_left": "SSIM left",
        "ssim_right": "SSIM right",
    }

    def score(self, outputs: Mapping[str, np.ndarray], ground_truth: Mapping[str, np.ndarray],
              camera: StereoCameraModel | None) -> dict[str, float | None]:
        """See the class doc.

        Raises:
            ValueError: when no view has both an output and a reference, or for an output whose size differs from
                its reference (e.g. a node with another scale than the bag's), naming the view.
        """
        from stereo_depth_ros.evaluation.sr_metrics import psnr, ssim

        result: dict[str, float | None] = {key: None for key in self.metric_labels}
        views = [side for side in ("left", "right") if f"{side}_image" in outputs and f"{side}_image" in ground_truth]
        if not views:
            raise ValueError(f"the {self.name} scorer needs an output and a reference image of one view "
                             f"('left_image' or 'right_image'), got outputs {sorted(outputs) or 'none'} and ground "
                             f"truth {sorted(ground_truth) or 'none'}")
        for side in views:
            estimate, reference = outputs[f"{side}_image"], ground_truth[f"{side}_image"]
            if np.shape(estimate) != np.shape(reference):
                raise ValueError(f"the {side} super-resolved image is {np.shape(estimate)} but its reference is "
                                 f"{np.shape(reference)} (is the node's scale the bag's?)")
            result[f"psnr_{side}_db"] = psnr(estimate, reference)
            result[f"ssim_{side}"] = ssim(estimate, reference)
        if len(views) == 2:
            result["psnr_db"] = (result["psnr_left_db"] + result["psnr_right_db"]) / 2
            result["ssim"] = (result["ssim_left"] + result["ssim_right"]) / 2
        return result


register_scorer(SuperResolutionScorer.name, SuperResolutionScorer)


class CrossModalScorer(Scorer):
    """A pseudo-RGB image translated from NIR against the real RGB image aligned to the NIR view (issue 14; paper
    004, section 4.5), with the NIR-colourisation metrics (VCIP 2020 Grand Challenge) masked to the valid area of
    the alignment (:mod:`stereo_depth_ros.evaluation.cross_modal_metrics`, the metrics of ``eval-cross-modal``):
    ``psnr_db`` (PSNR on RGB in [0, 1], dB; inf for equal images, skipped by the mean), ``ssim`` (in [-1, 1]) and
    ``angular_error_deg`` (mean angle between per-pixel RGB vectors, degrees, in [0, 90]).

    Arrays: ``outputs["pseudo_rgb_image"]`` and ``ground_truth["reference_image"]``, (H, W, 3) uint8 BGR of one size
    (at least 7x7 pixels, SSIM's window); optional ``ground_truth["valid_mask"]``, (H, W) bool (absent: every pixel).
    """

    name = "cross-modal"
    output_kinds = ("pseudo_rgb_image",)
    ground_truth_kinds = ("reference_image",)
    metric_labels = {
        "psnr_db": "PSNR (dB, masked)",
        "ssim": "SSIM (masked)",
        "angular_error_deg": "mean angular colour error (degrees, masked)",
    }

    def score(self, outputs: Mapping[str, np.ndarray], ground_truth: Mapping[str, np.ndarray],
              camera: StereoCameraModel | None) -> dict[str, float | None]:
        """See the class doc.

        Raises:
            ValueError: without the pseudo-RGB output or the reference, for images that are not (H, W, 3) or
                differ in size (naming both sizes), a mask of another size or with no valid pixel, or images
                smaller than 7x7.
        """
        from stereo_depth_ros.evaluation.cross_modal_metrics import colour_metrics

        if "pseudo_rgb_image" not in outputs or "reference_image" not in ground_truth:
            raise ValueError(f"the {self.name} scorer needs the output 'pseudo_rgb_image' and the ground truth "
                             f"'reference_image', got outputs {sorted(outputs) or 'none'} and ground truth "
                             f"{sorted(ground_truth) or 'none'}")
        estimate, reference = np.asarray(outputs["pseudo_rgb_image"]), np.asarray(ground_truth["reference_image"])
        for what, image in (("pseudo-RGB image", estimate), ("reference image", reference)):
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"the {what} must be (H, W, 3), got shape {image.shape}")
        if estimate.shape != reference.shape:
            raise ValueError(f"the pseudo-RGB image is {estimate.shape[1]}x{estimate.shape[0]} pixels but the "
                             f"reference is {reference.shape[1]}x{reference.shape[0]} (was the bag made at another "
                             f"short side than the NIR input?)")
        mask = ground_truth.get("valid_mask")
        return dict(colour_metrics(estimate, reference, None if mask is None else np.asarray(mask, bool)))


register_scorer(CrossModalScorer.name, CrossModalScorer)
