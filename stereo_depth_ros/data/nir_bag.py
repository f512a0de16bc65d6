"""NIR bags: rosbag2 (MCAP) bags that drive the cross-modal node in input mode ``"nir"`` (issue 14) and hold the
real colour image it is scored against. No ROS needed (rosbags, :mod:`stereo_depth_ros.data.bag_io`).

Topics (namespace ``/stereo``, the replay's; the node reads ``image_nir`` there, bringup_spec's remappings):

- ``/stereo/image_nir`` (``sensor_msgs/Image``, ``mono8``): the NIR image, the node's input.
- ``/stereo/gt/image_rgb`` (``sensor_msgs/Image``, ``bgr8``): the real RGB image aligned to the NIR view (for the
  held-out NIR/RGB pairs: warped onto the NIR by the pair's affine matrix, :func:`stereo_depth_ros.data.nir_rgb.
  read_aligned_pairs`), the reference of the replay's ``"cross-modal"`` scorer.
- ``/stereo/gt/valid_mask`` (``sensor_msgs/Image``, ``mono8``, 0 or 255): 255 where the reference has data (the
  valid area of the warp); the metrics are computed inside it.

All messages of one frame share a header stamp (= log time); frames are ``1 / rate`` seconds apart.

NIR/RGB stereo bags (``make-bag --nir-rgb DIR --stereo-shift S``, :func:`make_nir_stereo_bag_from_folder`) drive the
node in input mode ``"nir-rgb-pair"`` instead: the stereo bag layout (:mod:`stereo_depth_ros.data.stereo_bag`:
``/stereo/left/image_rect`` the NIR view, ``mono8``; ``/stereo/right/image_rect`` the RGB view, ``bgr8``; both
camera_info; ``/stereo/gt/depth``), made from aligned NIR/RGB photographs shifted by a known disparity
(:func:`stereo_depth_ros.data.nir_rgb.shifted_real_pairs`).

``stereo-depth-ros make-bag --nir-rgb DIR [--short-side 256] [--limit N]`` (:func:`make_nir_bag_from_folder`)
writes the held-out pairs of a folder such as ``../shared/data/nir_rgb/indoor`` at the short side that
``eval-cross-modal`` evaluates at (default 256), downscaled as it does (area interpolation for the NIR and the RGB,
nearest for the mask, the RGB set to 0 outside the mask), so a replay and ``eval-cross-modal --limit N`` score
the same pixels.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stereo_depth_ros.data.bag_io import IMAGE_TYPE, RawBagRecorder, image_message, serialize
from stereo_depth_ros.data.nir_rgb import downscale_aligned_pair, read_aligned_pairs, shifted_real_pairs
from stereo_depth_ros.data.stereo_bag import StereoBagSummary, write_stereo_bag
from stereo_depth_ros.geometry import StereoCameraModel

__all__ = ["NIR_IMAGE_TOPIC", "GT_RGB_TOPIC", "GT_VALID_MASK_TOPIC", "NirBagSummary", "write_nir_bag",
           "make_nir_bag_from_folder", "make_nir_stereo_bag_from_folder", "NIR_STEREO_BASELINE_M"]

NIR_IMAGE_TOPIC = "/stereo/image_nir"
GT_RGB_TOPIC = "/stereo/gt/image_rgb"
GT_VALID_MASK_TOPIC = "/stereo/gt/valid_mask"
NIR_FRAME_ID = "nir_optical_frame"
DEFAULT_SHORT_SIDE = 256
#: Baseline of the nominal calibration of a NIR/RGB stereo bag made from photographs (fx = the image width).
NIR_STEREO_BASELINE_M = 0.05


@dataclass
class NirBagSummary:
    """What a NIR bag holds.

    Attributes:
        path: the bag folder.
        frames: number of NIR images.
        topics: topic -> (message type, message count).
        width, height: image size in pixels.
        start_ns, end_ns: first and last header stamp in nanoseconds.
        names: the pairs written (e.g. ``["0001", "0002"]``), when known.
    """

    path: Path
    frames: int
    topics: dict[str, tuple[str, int]]
    width: int = 0
    height: int = 0
    start_ns: int = 0
    end_ns: int = 0
    names: list[str] = field(default_factory=list)


def write_nir_bag(out: str | Path, nirs: Iterable[np.ndarray], references: Iterable[np.ndarray],
                  valid_masks: Iterable[np.ndarray] | None = None, rate_hz: float = 10.0,
                  frame_id: str = NIR_FRAME_ID, start_stamp_ns: int | None = None,
                  overwrite: bool = False) -> NirBagSummary:
    """Write a NIR bag (module doc): one frame per NIR image, with its reference and valid mask.

    Args:
        out: bag folder to create.
        nirs: (H, W) uint8 NIR images (``mono8``).
        references: (H, W, 3) uint8 BGR colour images aligned to the NIR images (same size each), as many.
        valid_masks: (H, W) bool (or 0/non-zero) masks, as many; None: every pixel valid. Written as ``mono8``
            0/255.
        rate_hz: frame rate of the stamps in Hz (> 0).
        frame_id: header frame id of every message (the NIR camera's optical frame).
        start_stamp_ns: stamp of the first frame in nanoseconds since the epoch (None: now).
        overwrite: replace an existing bag folder.

    Returns:
        :class:`NirBagSummary`.

    Raises:
        ValueError: for no frame, different counts, a NIR image that is not (H, W) uint8, a reference that is not
            (H, W, 3) uint8 of the NIR's size, a mask of another size or with no valid pixel, a bad rate or an
            existing output without ``overwrite``.
    """
    if not (isinstance(rate_hz, (int, float)) and math.isfinite(rate_hz) and rate_hz > 0):
        raise ValueError(f"rate_hz must be a positive frame rate in Hz, got {rate_hz!r}")
    if not frame_id:
        raise ValueError("frame_id must not be empty")
    nirs, references = list(nirs), list(references)
    masks = [None] * len(nirs) if valid_masks is None else list(valid_masks)
    if not nirs or len(references) != len(nirs) or len(masks) != len(nirs):
        raise ValueError(f"a NIR bag needs as many NIR images, reference images and masks (>= 1), got {len(nirs)}, "
                         f"{len(references)}, {len(masks)}")
    checked = []
    for index, (nir, reference, mask) in enumerate(zip(nirs, references, masks)):
        nir, reference = np.asarray(nir), np.asarray(reference)
        if nir.ndim != 2 or nir.dtype != np.uint8:
            raise ValueError(f"frame {index}: the NIR image must be (H, W) uint8, got {nir.shape} {nir.dtype}")
        if reference.shape != nir.shape + (3,) or reference.dtype != np.uint8:
            raise ValueError(f"frame {index}: the reference must be (H, W, 3) uint8 BGR of the NIR's size "
                             f"{nir.shape[1]}x{nir.shape[0]}, got {reference.shape} {reference.dtype}")
        mask = np.ones(nir.shape, bool) if mask is None else np.asarray(mask)
        if mask.shape != nir.shape:
            raise ValueError(f"frame {index}: the valid mask is {mask.shape}, the NIR image {nir.shape}")
        if not mask.any():
            raise ValueError(f"frame {index}: the valid mask has no valid pixel")
        checked.append((nir, reference, np.where(mask.astype(bool), 255, 0).astype(np.uint8)))
    path = Path(out)
    start = time.time_ns() if start_stamp_ns is None else int(start_stamp_ns)
    period_ns = int(round(1e9 / rate_hz))
    topics = (NIR_IMAGE_TOPIC, GT_RGB_TOPIC, GT_VALID_MASK_TOPIC)
    recorder = RawBagRecorder(path, {topic: IMAGE_TYPE for topic in topics}, overwrite=overwrite)
    try:
        for index, images in enumerate(checked):
            stamp = start + index * period_ns
            for topic, image in zip(topics, images):
                recorder.write(topic, stamp, serialize(image_message(image, stamp, frame_id), IMAGE_TYPE))
    finally:
        recorder.close()
    height, width = checked[0][0].shape
    return NirBagSummary(path=path, frames=len(checked), topics={t: (IMAGE_TYPE, recorder.counts[t]) for t in topics},
                         width=width, height=height, start_ns=start, end_ns=start + (len(checked) - 1) * period_ns)


def _check_short_side(short_side: int | None) -> None:
    if short_side is not None and (isinstance(short_side, bool) or int(short_side) != short_side
                                   or short_side <= 0):
        raise ValueError(f"short side must be a positive number of pixels or None, got {short_side!r}")


def make_nir_bag_from_folder(folder: str | Path, out: str | Path, short_side: int | None = DEFAULT_SHORT_SIDE,
                             limit: int | None = None, **options) -> NirBagSummary:
    """``make-bag --nir-rgb``: the held-out pairs of ``folder`` (``NNNN_nir.jpg``, ``NNNN_rgb.jpg``,
    ``NNNN_nir.npy``), aligned (:func:`~stereo_depth_ros.data.nir_rgb.read_aligned_pairs`) and downscaled
    (:func:`~stereo_depth_ros.data.nir_rgb.downscale_aligned_pair`), as a NIR bag (:func:`write_nir_bag`), in file-number order.

    Args:
        folder: the pairs' folder (e.g. ``../shared/data/nir_rgb/indoor``).
        out: bag folder to create.
        short_side: short side in pixels (None: full size); default 256, ``eval-cross-modal``'s.
        limit: the first ``limit`` pairs only (None: all).
        options: ``rate_hz``, ``frame_id``, ``start_stamp_ns``, ``overwrite`` of :func:`write_nir_bag`.

    Raises:
        FileNotFoundError: for a missing folder, no pairs, or a pair without its matrix.
        ValueError: for a bad short side or limit, a bad matrix, and as :func:`write_nir_bag`.
    """
    _check_short_side(short_side)
    pairs = read_aligned_pairs(folder, limit)
    scaled = [downscale_aligned_pair(pair, short_side) for pair in pairs]
    summary = write_nir_bag(out, [s[0] for s in scaled], [s[1] for s in scaled], [s[2] for s in scaled],
                            **options)
    summary.names = [pair.name for pair in pairs]
    return summary


def make_nir_stereo_bag_from_folder(folder: str | Path, out: str | Path, shift_px: int,
                                    short_side: int | None = DEFAULT_SHORT_SIDE, limit: int | None = None,
                                    pixel_aligned: bool = False, **options) -> StereoBagSummary:
    """``make-bag --nir-rgb DIR --stereo-shift S``: real NIR/RGB stereo pairs with exact ground truth, as a stereo
    bag for ``cross_modal_node`` in input mode ``"nir-rgb-pair"`` (module doc).

    Each pair of ``folder`` becomes the left view NIR[:, :W - s] and the right view RGB[:, s:]
    (:func:`~stereo_depth_ros.data.nir_rgb.shifted_real_pairs`, the pairs ``eval-cross-spectral --real-nir`` scores),
    all cropped from the top-left to the smallest size among them (one calibration per bag). The calibration is
    nominal: fx = fy = the image width in pixels, the principal point at the centre, baseline
    :data:`NIR_STEREO_BASELINE_M`; the ground-truth depth is ``fx B / s`` where the GT disparity is known, NaN
    elsewhere, so the replay's ``disparity-depth`` scorer measures the disparity EPE against ``s``.

    Args:
        folder: aligned NIR/RGB photographs (e.g. ``../shared/data/nir_rgb/indoor``).
        out: bag folder to create.
        shift_px: the known disparity in pixels (> 0, less than half the downscaled width).
        short_side: short side in pixels before the shift (None: full size); default 256.
        limit: the first ``limit`` pairs only (None: all).
        pixel_aligned: the photographs need no warp (``nir_rgb/country``).
        options: ``rate_hz``, ``frame_id``, ``start_stamp_ns``, ``overwrite`` of
            :func:`~stereo_depth_ros.data.stereo_bag.write_stereo_bag`.

    Returns:
        :class:`~stereo_depth_ros.data.stereo_bag.StereoBagSummary`.

    Raises:
        FileNotFoundError: for a missing folder, no pairs, or a pair without its matrix.
        ValueError: for a bad shift, short side or limit, and as ``write_stereo_bag``.
    """
    _check_short_side(short_side)
    pairs = shifted_real_pairs(folder, shift_px, short_side, limit, pixel_aligned)
    height = min(pair["nir"].shape[0] for pair in pairs)
    width = min(pair["nir"].shape[1] for pair in pairs)
    camera = StereoCameraModel(fx=float(width), cx=(width - 1) / 2.0, cy=(height - 1) / 2.0,
                               baseline_m=NIR_STEREO_BASELINE_M)

    def crop(array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(array[:height, :width])

    return write_stereo_bag(out, [crop(pair["nir"]) for pair in pairs], [crop(pair["right_rgb"]) for pair in pairs],
                            camera, gt_depths=[camera.depth_from_disparity(crop(pair["gt_disparity"]))
                                               for pair in pairs], total=len(pairs), **options)
