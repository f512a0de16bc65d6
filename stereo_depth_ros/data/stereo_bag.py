"""The stereo bag schema and ``stereo-depth-ros make-bag``: rectified pairs with camera_info and ground truth.

Generic bag reading and writing is in :mod:`stereo_depth_ros.data.bag_io`; the ground-truth readers are in
:mod:`stereo_depth_ros.evaluation.readers`. No ROS installation is needed.

Topics of a stereo bag (the stereo node runs in namespace ``/stereo``, see ``docs/bags_and_replay.md``):

====================================  ===============================  ============================================
topic                                 type                             content
====================================  ===============================  ============================================
``/stereo/left/image_rect``           ``sensor_msgs/msg/Image``        rectified left image, ``bgr8`` or ``mono8``
``/stereo/right/image_rect``          ``sensor_msgs/msg/Image``        rectified right image
``/stereo/left/camera_info``          ``sensor_msgs/msg/CameraInfo``   K, R, P of the rectified left camera
``/stereo/right/camera_info``         ``sensor_msgs/msg/CameraInfo``   same, right ``P[3] = -fx * B`` (REP-104) and
                                                                       the right camera's own ``cx``
``/stereo/gt/depth`` (optional)       ``sensor_msgs/msg/Image``        ``32FC1`` ground-truth depth, metres, NaN
                                                                       where unknown (REP-118)
``/stereo/gt/left/image_rect``        ``sensor_msgs/msg/Image``        super-resolution bags only: the
(optional)                                                             high-resolution (HR) left image, ``bgr8``,
                                                                       the reference of the SR node's output
``/stereo/gt/right/image_rect``       ``sensor_msgs/msg/Image``        the HR right image (same)
(optional)
====================================  ===============================  ============================================

A super-resolution bag (:func:`write_super_resolution_bag`, ``make-bag --super-resolution-scale S``) holds the
low-resolution (LR) pair as the input images: the bicubic downscale of the HR pair by the degradation the SR training
uses (the caller passes it, :func:`stereo_depth_ros.models.stereo_sr.bicubic_downscale`), with the camera_info of the
HR pair scaled down by ``1 / S`` (:func:`scale_down_camera_info`, the inverse of the SR node's up-scaling), and the HR
pair, cropped to multiples of ``S``, as the reference topics above.

All messages of one frame share a header stamp; frames are ``1 / rate`` seconds apart; the bag's log time of each
message equals its header stamp. Frame ids follow REP-103 optical frames (``stereo_left_optical_frame``,
``stereo_right_optical_frame``).

Calibration: the camera_info pair is read by :meth:`stereo_depth_ros.geometry.StereoCameraModel.from_camera_info`
(image_geometry's semantics). Ground-truth disparity given to make-bag is an image disparity ``d = x_l - x_r``
and becomes depth ``Z = fx B / (d - (cx_left - cx_right)) = fx B / (d + doffs)``.
"""

from __future__ import annotations

import dataclasses
import itertools
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stereo_depth_ros.data.bag_io import (CAMERA_INFO_TYPE, IMAGE_TYPE, declared_topics, deserialize,
                                          header_message, header_stamp_from_cdr, image_message, iter_bag_messages,
                                          prepare_output, typestore)
from stereo_depth_ros.evaluation.readers import (DEPTH_SUFFIXES, DISPARITY_SUFFIXES, match_ground_truth,
                                                 read_depth, read_disparity)
from stereo_depth_ros.geometry import StereoCameraModel
from stereo_depth_ros.images import crop_to_multiple, pair_stereo_folders, read_image_bgr
from stereo_depth_ros.yaml_files import read_yaml

STEREO_NAMESPACE = "/stereo"
LEFT_IMAGE_TOPIC = "/stereo/left/image_rect"
RIGHT_IMAGE_TOPIC = "/stereo/right/image_rect"
LEFT_INFO_TOPIC = "/stereo/left/camera_info"
RIGHT_INFO_TOPIC = "/stereo/right/camera_info"
GT_DEPTH_TOPIC = "/stereo/gt/depth"
GT_LEFT_IMAGE_TOPIC = "/stereo/gt/left/image_rect"
GT_RIGHT_IMAGE_TOPIC = "/stereo/gt/right/image_rect"
INPUT_TOPICS = (LEFT_IMAGE_TOPIC, RIGHT_IMAGE_TOPIC, LEFT_INFO_TOPIC, RIGHT_INFO_TOPIC)
TOPIC_TYPES = {LEFT_IMAGE_TOPIC: IMAGE_TYPE, RIGHT_IMAGE_TOPIC: IMAGE_TYPE, LEFT_INFO_TOPIC: CAMERA_INFO_TYPE,
               RIGHT_INFO_TOPIC: CAMERA_INFO_TYPE, GT_DEPTH_TOPIC: IMAGE_TYPE, GT_LEFT_IMAGE_TOPIC: IMAGE_TYPE,
               GT_RIGHT_IMAGE_TOPIC: IMAGE_TYPE}

LEFT_FRAME_ID = "stereo_left_optical_frame"
RIGHT_FRAME_ID = "stereo_right_optical_frame"


# ----------------------------------------------------------------------------------------------- camera_info


@dataclass(frozen=True)
class CameraInfoData:
    """The calibration fields of a ``sensor_msgs/CameraInfo`` message (row-major, as in the message).

    Attributes:
        width, height: image size in pixels.
        k: 9 floats, intrinsic matrix ``[fx 0 cx; 0 fy cy; 0 0 1]``.
        d: distortion coefficients (empty or zeros for rectified images).
        r: 9 floats, rectification rotation (identity for rectified images).
        p: 12 floats, projection matrix ``[fx' 0 cx' Tx; 0 fy' cy' 0; 0 0 1 0]``; for the right camera of a
            stereo pair ``Tx = -fx' * B`` with ``B`` the baseline in metres (REP-104).
        distortion_model: "plumb_bob" (or any model name; the node ignores distortion of rectified images).
    """

    width: int
    height: int
    k: tuple[float, ...]
    d: tuple[float, ...]
    r: tuple[float, ...]
    p: tuple[float, ...]
    distortion_model: str = "plumb_bob"

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera_info image size must be positive, got {self.width}x{self.height}")
        for name, size in (("k", 9), ("r", 9), ("p", 12)):
            values = getattr(self, name)
            if len(values) != size or not all(np.isfinite(values)):
                raise ValueError(f"camera_info {name.upper()} must hold {size} finite numbers, got {values}")

    @classmethod
    def from_yaml(cls, path: str | Path) -> "CameraInfoData":
        """Read the camera_calibration_parsers YAML format (what ``cameracalibrator`` writes).

        Keys: ``image_width``, ``image_height``, ``camera_matrix``, ``distortion_model``,
        ``distortion_coefficients``, ``rectification_matrix``, ``projection_matrix``; each matrix a mapping with
        ``rows``, ``cols``, ``data``. ``distortion_*`` and ``rectification_matrix`` are optional (zeros and the
        identity).

        Raises:
            FileNotFoundError: if the file does not exist.
            ValueError: naming the file and the key, for a missing key or a matrix of the wrong size.
        """
        path = Path(path)
        content = read_yaml(path, "camera_info YAML")
        if not isinstance(content, dict):
            raise ValueError(f"camera_info YAML {path} must be a mapping with image_width, camera_matrix, ...")

        def matrix(key: str, size: int, default: Sequence[float] | None = None) -> tuple[float, ...]:
            entry = content.get(key)
            if entry is None:
                if default is None:
                    raise ValueError(f"camera_info YAML {path} has no {key!r}")
                return tuple(float(v) for v in default)
            data = entry.get("data") if isinstance(entry, dict) else entry
            try:
                values = tuple(float(v) for v in data)
            except (TypeError, ValueError) as error:
                raise ValueError(f"camera_info YAML {path}: {key!r} data must be a list of numbers") from error
            if size and len(values) != size:
                raise ValueError(f"camera_info YAML {path}: {key!r} must hold {size} numbers, got {len(values)}")
            return values

        for key in ("image_width", "image_height"):
            if not isinstance(content.get(key), int):
                raise ValueError(f"camera_info YAML {path} needs an integer {key!r}")
        return cls(width=content["image_width"], height=content["image_height"],
                   k=matrix("camera_matrix", 9), d=matrix("distortion_coefficients", 0, ()),
                   r=matrix("rectification_matrix", 9, np.eye(3).ravel()), p=matrix("projection_matrix", 12),
                   distortion_model=str(content.get("distortion_model", "plumb_bob")))


def stereo_camera_infos(camera: StereoCameraModel, width: int, height: int
                        ) -> tuple[CameraInfoData, CameraInfoData]:
    """camera_info of a rectified pair from a :class:`StereoCameraModel` (no distortion, identity R).

    The left camera gets ``K = [fx 0 cx; 0 fy cy; 0 0 1]`` and ``P = [fx 0 cx 0; 0 fy cy 0; 0 0 1 0]``; the right
    camera the same with its own principal point ``cx_right`` and ``P[3] = Tx = -fx * B`` (REP-104, as
    ``stereo_image_proc`` and image_geometry expect). :meth:`StereoCameraModel.from_camera_info` of the result
    gives ``camera`` back.

    Args:
        camera: focal lengths and principal points in pixels, baseline in metres.
        width, height: image size in pixels.

    Returns:
        ``(left, right)`` :class:`CameraInfoData`.
    """
    fx, fy, cy = camera.fx, camera.fy, camera.cy
    r = tuple(float(v) for v in np.eye(3).ravel())
    zeros = (0.0,) * 5
    result = []
    for cx, tx in ((camera.cx, 0.0), (camera.cx_right, -fx * camera.baseline_m)):
        k = (fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0)
        p = (fx, 0.0, cx, tx, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0)
        result.append(CameraInfoData(width, height, k, zeros, r, p))
    return result[0], result[1]


def camera_info_message(info: CameraInfoData, stamp_ns: int, frame_id: str):
    """A rosbags ``sensor_msgs/msg/CameraInfo`` for :class:`CameraInfoData` (binning 0, full-image ROI)."""
    types = typestore().types
    roi = types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return types[CAMERA_INFO_TYPE](
        header=header_message(stamp_ns, frame_id), height=info.height, width=info.width,
        distortion_model=info.distortion_model, d=np.array(info.d, dtype=np.float64),
        k=np.array(info.k, dtype=np.float64), r=np.array(info.r, dtype=np.float64),
        p=np.array(info.p, dtype=np.float64), binning_x=0, binning_y=0, roi=roi)


def camera_info_from_message(msg) -> CameraInfoData:
    """:class:`CameraInfoData` from a deserialized ``CameraInfo`` message (rosbags or rclpy)."""
    return CameraInfoData(width=int(msg.width), height=int(msg.height), k=tuple(float(v) for v in msg.k),
                          d=tuple(float(v) for v in msg.d), r=tuple(float(v) for v in msg.r),
                          p=tuple(float(v) for v in msg.p), distortion_model=str(msg.distortion_model))


def scale_down_camera_info(info: CameraInfoData, scale: int) -> CameraInfoData:
    """The camera_info of images ``scale`` times smaller (the LR input of a super-resolution bag).

    Width and height are divided by ``scale`` (they must be multiples of it); K (``fx``, ``cx``, ``fy``, ``cy``) and
    P (``fx``, ``cx``, ``Tx = -fx B``, ``fy``, ``cy``) are divided by ``scale``; D and R are unchanged. This is the
    exact inverse of the super-resolution node's :func:`stereo_depth_ros.ros.sr_node.scale_camera_info` (image_proc's
    resize convention), so the node's output camera_info equals the HR camera_info; the baseline
    ``B = -Tx / fx`` (metres) is unchanged.

    Args:
        info: camera_info of the high-resolution images (pixels; baseline in metres).
        scale: integer factor >= 1 (2 or 4 for the SR models).

    Raises:
        ValueError: for a scale that is not a positive integer, or an image size that is not a multiple of it.
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    if info.width % scale or info.height % scale:
        raise ValueError(f"camera_info size {info.width}x{info.height} is not a multiple of the scale {scale}")
    k, p = list(info.k), list(info.p)
    for index in (0, 2, 4, 5):
        k[index] /= scale
    for index in (0, 2, 3, 5, 6):
        p[index] /= scale
    return CameraInfoData(width=info.width // scale, height=info.height // scale, k=tuple(k), d=info.d, r=info.r,
                          p=tuple(p), distortion_model=info.distortion_model)


# ----------------------------------------------------------------------------------------------- writing


@dataclass
class StereoBagSummary:
    """What a stereo bag holds (returned by the writers and by :func:`inspect_stereo_bag`).

    Attributes:
        path: the bag folder.
        frames: number of stereo pairs (left images).
        topics: topic -> (message type, message count).
        width, height: image size in pixels (0 when unknown).
        calibration: the stereo camera model of the camera_info topics
            (:meth:`~stereo_depth_ros.geometry.StereoCameraModel.from_camera_info`), or None.
        start_ns, end_ns: first and last header stamp of the left images, nanoseconds.
        has_gt_depth: whether ``/stereo/gt/depth`` is present.
    """

    path: Path
    frames: int
    topics: dict[str, tuple[str, int]]
    width: int = 0
    height: int = 0
    calibration: StereoCameraModel | None = None
    start_ns: int = 0
    end_ns: int = 0
    has_gt_depth: bool = False

    @property
    def rate_hz(self) -> float:
        """Mean frame rate from the stamps (0 for fewer than two frames)."""
        if self.frames < 2 or self.end_ns <= self.start_ns:
            return 0.0
        return (self.frames - 1) * 1e9 / (self.end_ns - self.start_ns)


class StereoBagWriter:
    """Writes frames of a rectified stereo pair into a new rosbag2 MCAP bag (a context manager).

    Args:
        path: bag folder to create (must not exist unless ``overwrite``).
        left_info, right_info: calibration of the rectified pair (:func:`stereo_camera_infos` or YAML).
        frame_id: frame id of the left camera (REP-103 optical frame); the right camera gets ``frame_id`` with
            "left" replaced by "right" (or ``frame_id + "_right"`` when it has no "left").
        with_gt_depth: add the ``/stereo/gt/depth`` topic.
        overwrite: replace an existing bag folder.
        with_reference_images: add the ``/stereo/gt/left/image_rect`` and ``/stereo/gt/right/image_rect`` topics
            (the HR reference pair of a super-resolution bag; any size).

    Raises:
        ValueError: if the output exists (without ``overwrite``) or the camera_info pair is not a valid stereo
            calibration (see :meth:`~stereo_depth_ros.geometry.StereoCameraModel.from_camera_info`), or the
            cameras' image sizes differ.
    """

    def __init__(self, path: str | Path, left_info: CameraInfoData, right_info: CameraInfoData,
                 frame_id: str = LEFT_FRAME_ID, with_gt_depth: bool = False, overwrite: bool = False,
                 with_reference_images: bool = False) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.calibration = StereoCameraModel.from_camera_info(left_info, right_info)
        if not frame_id:
            raise ValueError("frame_id must not be empty")
        self.path = Path(path)
        self.left_info, self.right_info = left_info, right_info
        self.frame_id = frame_id
        self.right_frame_id = frame_id.replace("left", "right") if "left" in frame_id else frame_id + "_right"
        self.with_gt_depth = with_gt_depth
        self.with_reference_images = with_reference_images
        self.frames = 0
        self.start_ns = self.end_ns = 0
        self._counts: Counter = Counter()
        prepare_output(self.path, overwrite)
        self._writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        topics = list(INPUT_TOPICS) + ([GT_DEPTH_TOPIC] if with_gt_depth else []) \
            + ([GT_LEFT_IMAGE_TOPIC, GT_RIGHT_IMAGE_TOPIC] if with_reference_images else [])
        self._connections = {t: self._writer.add_connection(t, TOPIC_TYPES[t], typestore=typestore())
                             for t in topics}

    def __enter__(self) -> "StereoBagWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _write(self, topic: str, msg, stamp_ns: int) -> None:
        raw = typestore().serialize_cdr(msg, TOPIC_TYPES[topic])
        self._writer.write(self._connections[topic], stamp_ns, raw)
        self._counts[topic] += 1

    def write_frame(self, stamp_ns: int, left_bgr: np.ndarray, right_bgr: np.ndarray,
                    gt_depth_m: np.ndarray | None = None,
                    reference_pair: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Write one frame: both camera_info messages, both images and (optionally) the ground-truth depth and
        the reference (HR) pair, all with header stamp and log time ``stamp_ns``.

        Args:
            stamp_ns: header stamp in nanoseconds; must increase from frame to frame.
            left_bgr, right_bgr: (H, W, 3) uint8 BGR (or (H, W) uint8 grey) of the camera_info size, one dtype
                (one view may be grey and the other colour: a NIR/RGB pair).
            gt_depth_m: (H, W) float depth in metres, NaN where unknown; required when the writer was made
                ``with_gt_depth``, refused otherwise.
            reference_pair: (left, right) (H', W', 3) uint8 BGR reference images of one size (the HR pair of a
                super-resolution bag); required when the writer was made ``with_reference_images``, refused
                otherwise.

        Raises:
            ValueError: for images of another size than the camera_info, different left/right dtypes, a missing
                or unexpected depth or reference pair, or a stamp that does not increase.
        """
        size = (self.left_info.height, self.left_info.width)
        for side, image in (("left", left_bgr), ("right", right_bgr)):
            if image.shape[:2] != size:
                raise ValueError(f"frame {self.frames}: {side} image is {image.shape[1]}x{image.shape[0]} but the "
                                 f"camera_info says {size[1]}x{size[0]}")
        if left_bgr.dtype != right_bgr.dtype:  # a grey view beside a colour one is allowed (a NIR/RGB rig)
            raise ValueError(f"frame {self.frames}: left {left_bgr.shape} {left_bgr.dtype} and right "
                             f"{right_bgr.shape} {right_bgr.dtype} images differ")
        if (gt_depth_m is not None) != self.with_gt_depth:
            raise ValueError(f"frame {self.frames}: ground-truth depth is "
                             f"{'missing' if self.with_gt_depth else 'given but the bag was opened without it'}")
        if self.frames and stamp_ns <= self.end_ns:
            raise ValueError(f"frame {self.frames}: stamp {stamp_ns} ns does not increase (last {self.end_ns} ns)")
        if (reference_pair is not None) != self.with_reference_images:
            state = "missing" if self.with_reference_images else "given but the bag was opened without it"
            raise ValueError(f"frame {self.frames}: the reference pair is {state}")
        if reference_pair is not None:
            reference_left, reference_right = reference_pair
            for side, image in (("left", reference_left), ("right", reference_right)):
                if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 \
                        or image.dtype != np.uint8:
                    raise ValueError(f"frame {self.frames}: the {side} reference image must be (H, W, 3) uint8 BGR, "
                                     f"got {getattr(image, 'shape', type(image))} {getattr(image, 'dtype', '')}")
            if reference_left.shape != reference_right.shape:
                raise ValueError(f"frame {self.frames}: the reference images differ in size: "
                                 f"{reference_left.shape} vs {reference_right.shape}")
        self._write(LEFT_INFO_TOPIC, camera_info_message(self.left_info, stamp_ns, self.frame_id), stamp_ns)
        self._write(RIGHT_INFO_TOPIC, camera_info_message(self.right_info, stamp_ns, self.right_frame_id), stamp_ns)
        self._write(LEFT_IMAGE_TOPIC, image_message(left_bgr, stamp_ns, self.frame_id), stamp_ns)
        self._write(RIGHT_IMAGE_TOPIC, image_message(right_bgr, stamp_ns, self.right_frame_id), stamp_ns)
        if gt_depth_m is not None:
            depth = np.asarray(gt_depth_m, dtype=np.float32)
            if depth.shape != size:
                raise ValueError(f"frame {self.frames}: ground-truth depth is {depth.shape[1]}x{depth.shape[0]}, "
                                 f"images are {size[1]}x{size[0]}")
            depth = np.where(np.isfinite(depth) & (depth > 0), depth, np.float32(np.nan)).astype(np.float32)
            self._write(GT_DEPTH_TOPIC, image_message(depth, stamp_ns, self.frame_id), stamp_ns)
        if reference_pair is not None:
            self._write(GT_LEFT_IMAGE_TOPIC, image_message(reference_pair[0], stamp_ns, self.frame_id), stamp_ns)
            self._write(GT_RIGHT_IMAGE_TOPIC, image_message(reference_pair[1], stamp_ns, self.right_frame_id),
                        stamp_ns)
        if not self.frames:
            self.start_ns = stamp_ns
        self.end_ns = stamp_ns
        self.frames += 1

    def close(self) -> None:
        """Finish the bag (writes the MCAP summary and ``metadata.yaml``); safe to call twice."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def summary(self) -> StereoBagSummary:
        """What has been written so far."""
        topics = {t: (TOPIC_TYPES[t], self._counts[t]) for t in self._connections}
        return StereoBagSummary(path=self.path, frames=self.frames, topics=topics, width=self.left_info.width,
                                height=self.left_info.height, calibration=self.calibration,
                                start_ns=self.start_ns, end_ns=self.end_ns, has_gt_depth=self.with_gt_depth)


def write_stereo_bag(out: str | Path, lefts: Iterable[np.ndarray], rights: Iterable[np.ndarray],
                     calibration: StereoCameraModel | tuple[CameraInfoData, CameraInfoData],
                     gt_depths: Iterable[np.ndarray | None] | None = None, rate_hz: float = 10.0,
                     frame_id: str = LEFT_FRAME_ID, start_stamp_ns: int | None = None, overwrite: bool = False,
                     total: int | None = None, progress: bool = False,
                     reference_pairs: Iterable[tuple[np.ndarray, np.ndarray]] | None = None) -> StereoBagSummary:
    """Write a stereo bag from images in memory (or any iterables, consumed lazily).

    Args:
        out: bag folder to create.
        lefts, rights: (H, W, 3) uint8 BGR images (or (H, W) uint8 grey), rectified, same count.
        calibration: a :class:`StereoCameraModel` (camera_info made by :func:`stereo_camera_infos` for the
            first image's size) or a ``(left, right)`` :class:`CameraInfoData` pair.
        gt_depths: optional ground-truth depths, (H, W) float metres, NaN where unknown, one per frame.
        rate_hz: frame rate; frame ``i`` is stamped ``start + i / rate_hz`` seconds.
        frame_id: left optical frame id (REP-103); the right one replaces "left" with "right".
        start_stamp_ns: stamp of the first frame in nanoseconds (default: now, rounded to milliseconds).
        overwrite: replace an existing bag folder.
        total: number of frames, for the progress bar only.
        progress: show a tqdm progress bar.
        reference_pairs: optional (left, right) reference images, (H', W', 3) uint8 BGR, one pair per frame,
            written to ``/stereo/gt/left/image_rect`` and ``/stereo/gt/right/image_rect`` (super-resolution bags).

    Returns:
        :class:`StereoBagSummary` of the bag written.

    Raises:
        ValueError: for a rate <= 0, no frames, different numbers of left/right images, depths or reference
            pairs, image/depth sizes that disagree with the calibration, or an existing output.
    """
    if not np.isfinite(rate_hz) or rate_hz <= 0:
        raise ValueError(f"rate must be a positive number of frames per second, got {rate_hz}")
    if start_stamp_ns is None:
        start_stamp_ns = time.time_ns() // 1_000_000 * 1_000_000
    period_ns = 1e9 / rate_hz
    left_iter, right_iter = iter(lefts), iter(rights)
    depth_iter = iter(gt_depths) if gt_depths is not None else None
    reference_iter = iter(reference_pairs) if reference_pairs is not None else None
    sentinel = object()
    first_left = next(left_iter, sentinel)
    if first_left is sentinel:
        raise ValueError("no stereo pairs to write")
    if isinstance(calibration, StereoCameraModel):
        infos = stereo_camera_infos(calibration, width=first_left.shape[1], height=first_left.shape[0])
    else:
        infos = calibration
    out = Path(out)
    bar = tqdm(total=total, desc=f"writing {out.name}", unit="frame", disable=not progress)
    writer = StereoBagWriter(out, *infos, frame_id=frame_id, with_gt_depth=depth_iter is not None,
                             overwrite=overwrite, with_reference_images=reference_iter is not None)
    try:
        index, left = 0, first_left
        while left is not sentinel:
            right = next(right_iter, sentinel)
            if right is sentinel:
                raise ValueError(f"{index} left images but fewer right images")
            depth = next(depth_iter, sentinel) if depth_iter is not None else None
            if depth is sentinel:
                raise ValueError(f"{index + 1} or more stereo pairs but only {index} ground-truth depths")
            reference = next(reference_iter, sentinel) if reference_iter is not None else None
            if reference is sentinel:
                raise ValueError(f"{index + 1} or more stereo pairs but only {index} reference pairs")
            writer.write_frame(start_stamp_ns + int(round(index * period_ns)), left, right, depth, reference)
            bar.update()
            index += 1
            left = next(left_iter, sentinel)
        if next(right_iter, sentinel) is not sentinel:
            raise ValueError(f"{index} left images but more right images")
        if depth_iter is not None and next(depth_iter, sentinel) is not sentinel:
            raise ValueError(f"{index} stereo pairs but more ground-truth depths")
        if reference_iter is not None and next(reference_iter, sentinel) is not sentinel:
            raise ValueError(f"{index} stereo pairs but more reference pairs")
    except BaseException:
        writer.close()
        shutil.rmtree(out, ignore_errors=True)  # no half-written bag left behind
        raise
    finally:
        bar.close()
    writer.close()
    return writer.summary()


def write_super_resolution_bag(out: str | Path, hr_lefts: Iterable[np.ndarray], hr_rights: Iterable[np.ndarray],
                               calibration: StereoCameraModel | tuple[CameraInfoData, CameraInfoData], scale: int,
                               degrade: Callable[[np.ndarray, int], np.ndarray], **options) -> StereoBagSummary:
    """Write a super-resolution bag (module doc): the LR pair as the inputs, the HR pair as the reference.

    Each HR image is cropped to the top-left part whose sides are multiples of ``scale`` (as the SR evaluation
    does); the LR image is ``degrade(hr, scale)`` (pass
    :func:`stereo_depth_ros.models.stereo_sr.bicubic_downscale`, the SR training's antialiased bicubic downscale;
    this data layer does not import the models); the camera_info of the cropped HR size is scaled down by
    :func:`scale_down_camera_info`.

    Args:
        out: bag folder to create.
        hr_lefts, hr_rights: (H, W, 3) uint8 BGR rectified HR images, same count and size.
        calibration: the HR calibration: a :class:`StereoCameraModel` (camera_info for the cropped HR size) or a
            ``(left, right)`` :class:`CameraInfoData` pair of the HR images (cropping keeps the top-left corner, so
            K and P are unchanged).
        scale: 2 or 4 (any integer >= 2 is written; the SR node runs the models' scale).
        degrade: ``(hr (H, W, 3) uint8, scale) -> lr (H / scale, W / scale, 3) uint8``.
        options: ``rate_hz``, ``frame_id``, ``start_stamp_ns``, ``overwrite``, ``total``, ``progress`` of
            :func:`write_stereo_bag` (no ground-truth depth).

    Returns:
        :class:`StereoBagSummary` (size and calibration of the LR inputs).

    Raises:
        ValueError: for a scale below 2, images smaller than the scale, a degradation that returns another size,
            and as :func:`write_stereo_bag`.
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 2:
        raise ValueError(f"the super-resolution scale must be an integer >= 2, got {scale!r}")
    if "gt_depths" in options:
        raise ValueError("a super-resolution bag has no ground-truth depth (its reference is the HR pair)")

    def crop(image: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(crop_to_multiple(image, scale))

    hr_pairs = ((crop(left), crop(right)) for left, right in zip(hr_lefts, hr_rights, strict=True))
    first = next(hr_pairs, None)
    if first is None:
        raise ValueError("no stereo pairs to write")
    height, width = first[0].shape[:2]
    if isinstance(calibration, StereoCameraModel):
        hr_infos = stereo_camera_infos(calibration, width, height)
    else:
        for info in calibration:
            if (info.width // scale * scale, info.height // scale * scale) != (width, height):
                raise ValueError(f"camera_info of {info.width}x{info.height} images does not fit HR images of "
                                 f"{width}x{height} (after cropping to multiples of {scale})")
        hr_infos = tuple(dataclasses.replace(info, width=width, height=height) for info in calibration)
    lr_infos = (scale_down_camera_info(hr_infos[0], scale), scale_down_camera_info(hr_infos[1], scale))

    def low_resolution(image: np.ndarray) -> np.ndarray:
        small = degrade(image, scale)
        if not isinstance(small, np.ndarray) or small.shape[:2] != (image.shape[0] // scale, image.shape[1] // scale):
            raise ValueError(f"the degradation turned a {image.shape[1]}x{image.shape[0]} image into "
                             f"{getattr(small, 'shape', type(small))}, not 1/{scale} of it")
        return small

    # One pass over the pairs, consumed in step by the writer (tee keeps only the pair of the frame being written).
    lefts, rights, references = itertools.tee(itertools.chain([first], hr_pairs), 3)
    return write_stereo_bag(out, (low_resolution(pair[0]) for pair in lefts),
                            (low_resolution(pair[1]) for pair in rights), lr_infos, reference_pairs=references,
                            **options)


# ----------------------------------------------------------------------------------------------- folders


def make_bag_from_folders(left_dir: str | Path, right_dir: str | Path, out: str | Path, *,
                          camera_info_yamls: tuple[str | Path, str | Path] | None = None,
                          focal_px: float | None = None, baseline_m: float | None = None,
                          cx: float | None = None, cy: float | None = None, cx_right: float | None = None,
                          gt_disparity_dir: str | Path | None = None, gt_depth_dir: str | Path | None = None,
                          depth_scale: float = 1.0, gt_depth_encoding: str = "auto", rate_hz: float = 10.0,
                          frame_id: str = LEFT_FRAME_ID, start_stamp_ns: int | None = None,
                          overwrite: bool = False, progress: bool = True, super_resolution_scale: int | None = None,
                          degrade: Callable[[np.ndarray, int], np.ndarray] | None = None) -> StereoBagSummary:
    """Write a stereo bag from folders of rectified images (the ``stereo-depth-ros make-bag`` command).

    Calibration: either two camera_calibration_parsers YAML files (left, right; the right projection matrix
    holds ``P[3] = -fx * B`` and the right camera's own ``cx``), or ``focal_px`` (fx) and ``baseline_m`` (principal
    point ``cx``, ``cy`` default to the image centre ``W / 2``, ``H / 2``; the right camera's ``cx_right`` defaults
    to ``cx``).

    Ground truth (optional, one of): ``gt_disparity_dir`` with image disparity maps ``d = x_l - x_r`` in pixels
    (``.npy``, ``.pfm``, 16-bit ``.png`` = value / 256, float ``.tif``; read by
    :func:`stereo_depth_ros.evaluation.readers.read_disparity`), converted to depth with the camera model,
    ``Z = fx B / (d - (cx - cx_right)) = fx B / (d + doffs)``
    (:meth:`~stereo_depth_ros.geometry.StereoCameraModel.depth_from_disparity`); or ``gt_depth_dir`` with depth
    maps (see :func:`~stereo_depth_ros.evaluation.readers.read_depth`; ``depth_scale`` metres per unit).
    Ground-truth files are paired with the left images by
    :func:`~stereo_depth_ros.evaluation.readers.match_ground_truth`.

    With ``super_resolution_scale`` S (and ``degrade``, see :func:`write_super_resolution_bag`) the folders hold the
    HR pairs and the calibration is theirs: the bag gets the LR pairs as inputs and the HR pairs as the reference
    (no ground-truth depth).

    Returns:
        :class:`StereoBagSummary`.

    Raises:
        FileNotFoundError: for a missing folder or file.
        ValueError: for mismatched file names, a missing or double calibration, both ground-truth kinds, sizes
            that disagree, ground truth or no ``degrade`` with ``super_resolution_scale``, or an existing output.
    """
    if super_resolution_scale is not None and (gt_disparity_dir is not None or gt_depth_dir is not None):
        raise ValueError("a super-resolution bag has no ground-truth depth or disparity (its reference is the HR pair)")
    if super_resolution_scale is not None and degrade is None:
        raise ValueError("a super-resolution bag needs the degradation (degrade), e.g. the SR training's "
                         "bicubic_downscale")
    pairs = pair_stereo_folders(left_dir, right_dir)
    first = read_image_bgr(pairs[0][0])
    height, width = first.shape[:2]
    if camera_info_yamls is not None:
        if focal_px is not None or baseline_m is not None:
            raise ValueError("give either camera_info YAML files or a focal length and baseline, not both")
        infos = (CameraInfoData.from_yaml(camera_info_yamls[0]), CameraInfoData.from_yaml(camera_info_yamls[1]))
        calibration = StereoCameraModel.from_camera_info(*infos)
        if (infos[0].width, infos[0].height) != (width, height):
            raise ValueError(f"camera_info YAML {camera_info_yamls[0]} is for {infos[0].width}x{infos[0].height} "
                             f"images but {pairs[0][0]} is {width}x{height}")
    else:
        if focal_px is None or baseline_m is None:
            raise ValueError("a calibration is needed: camera_info YAML files (left, right) or a focal length in "
                             "pixels and a baseline in metres")
        cx = width / 2.0 if cx is None else float(cx)
        calibration = StereoCameraModel(fx=float(focal_px), baseline_m=float(baseline_m), cx=cx,
                                        cy=height / 2.0 if cy is None else float(cy),
                                        cx_right=cx if cx_right is None else float(cx_right))
        infos = stereo_camera_infos(calibration, width, height)
    if gt_disparity_dir is not None and gt_depth_dir is not None:
        raise ValueError("give either ground-truth disparity or ground-truth depth, not both")
    lefts = [left for left, _ in pairs]
    if super_resolution_scale is not None:
        return write_super_resolution_bag(out, (read_image_bgr(p) for p in lefts),
                                          (read_image_bgr(p) for _, p in pairs), infos, super_resolution_scale,
                                          degrade, rate_hz=rate_hz, frame_id=frame_id,
                                          start_stamp_ns=start_stamp_ns, overwrite=overwrite, total=len(pairs),
                                          progress=progress)
    gt_depths = None
    if gt_disparity_dir is not None:
        gt_files = match_ground_truth(lefts, gt_disparity_dir, DISPARITY_SUFFIXES, "ground-truth disparity")
        gt_depths = (calibration.depth_from_disparity(read_disparity(p)) for p in gt_files)
    elif gt_depth_dir is not None:
        suffixes = (".png",) if gt_depth_encoding == "bdis" else DEPTH_SUFFIXES
        gt_files = match_ground_truth(lefts, gt_depth_dir, suffixes, "ground-truth depth")
        read_depth(gt_files[0], depth_scale, gt_depth_encoding)  # fail early on a bad scale or encoding
        gt_depths = (read_depth(p, depth_scale, gt_depth_encoding) for p in gt_files)
    return write_stereo_bag(out, (read_image_bgr(p) for p in lefts), (read_image_bgr(p) for _, p in pairs),
                            infos, gt_depths=gt_depths, rate_hz=rate_hz, frame_id=frame_id,
                            start_stamp_ns=start_stamp_ns, overwrite=overwrite, total=len(pairs),
                            progress=progress)


# ----------------------------------------------------------------------------------------------- reading


def inspect_stereo_bag(path: str | Path, require_stereo: bool = True) -> StereoBagSummary:
    """Check a bag and summarise it: topics and counts, frames, image size, calibration, stamps.

    The whole bag is read once (so a truncated or damaged bag is detected here, before anything else runs).

    Args:
        path: bag folder.
        require_stereo: raise if one of the four stereo input topics is missing.

    Raises:
        FileNotFoundError: if the bag does not exist.
        ValueError: if the bag cannot be read, is truncated, lacks stereo topics (naming the topics it has),
            has a stereo topic of the wrong type, or holds no left image.
    """
    path = Path(path)
    declared = declared_topics(path)
    missing = [t for t in INPUT_TOPICS if t not in declared]
    if require_stereo and missing:
        raise ValueError(f"bag {path} lacks the stereo topics {missing}; it has {sorted(declared) or 'no topics'}. "
                         f"Make a stereo bag with 'stereo-depth-ros make-bag'")
    for topic in INPUT_TOPICS + (GT_DEPTH_TOPIC, GT_LEFT_IMAGE_TOPIC, GT_RIGHT_IMAGE_TOPIC):
        if topic in declared and declared[topic][0] != TOPIC_TYPES[topic]:
            raise ValueError(f"bag {path}: topic {topic} has type {declared[topic][0]}, expected {TOPIC_TYPES[topic]}")
    counts: Counter = Counter()
    left_stamps: list[int] = []
    infos: dict[str, CameraInfoData] = {}
    width = height = 0
    for message in iter_bag_messages(path):
        counts[message.topic] += 1
        if message.topic == LEFT_IMAGE_TOPIC:
            left_stamps.append(header_stamp_from_cdr(message.raw))
            if not width:
                image = deserialize(message.raw, IMAGE_TYPE)
                width, height = int(image.width), int(image.height)
        elif message.topic in (LEFT_INFO_TOPIC, RIGHT_INFO_TOPIC) and message.topic not in infos:
            infos[message.topic] = camera_info_from_message(deserialize(message.raw, CAMERA_INFO_TYPE))
    for topic, (_, declared_count) in declared.items():
        if counts[topic] < declared_count:
            raise ValueError(f"bag {path} is truncated: topic {topic} declares {declared_count} messages but only "
                             f"{counts[topic]} could be read")
    if require_stereo and not left_stamps:
        raise ValueError(f"bag {path} holds no message on {LEFT_IMAGE_TOPIC}")
    calibration = None
    if len(infos) == 2:
        calibration = StereoCameraModel.from_camera_info(infos[LEFT_INFO_TOPIC], infos[RIGHT_INFO_TOPIC])
    return StereoBagSummary(path=path, frames=len(left_stamps),
                            topics={t: (declared[t][0], counts[t]) for t in declared}, width=width, height=height,
                            calibration=calibration, start_ns=min(left_stamps, default=0),
                            end_ns=max(left_stamps, default=0), has_gt_depth=counts[GT_DEPTH_TOPIC] > 0)
