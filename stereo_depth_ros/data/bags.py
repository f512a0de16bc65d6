"""Stereo rosbag2 files without ROS: write rectified pairs with camera_info and ground truth, read them back.

Everything here uses the `rosbags <https://gitlab.com/ternaris/rosbags>`_ library (pure Python) and its typestore
of ROS 2 Kilted message definitions (``sensor_msgs``, ``stereo_msgs`` are the same in Jazzy and Humble), so it
runs on a machine without a ROS installation and never imports ``rclpy``. Bags are written in the rosbag2 MCAP
storage format (metadata version 9), which ``ros2 bag play``, ``rosbags`` and Foxglove read.

Topics of a stereo bag (the stereo node runs in namespace ``/stereo``, see ``docs/bags_and_replay.md``):

====================================  ===============================  ============================================
topic                                 type                             content
====================================  ===============================  ============================================
``/stereo/left/image_rect``           ``sensor_msgs/msg/Image``        rectified left image, ``bgr8`` or ``mono8``
``/stereo/right/image_rect``          ``sensor_msgs/msg/Image``        rectified right image
``/stereo/left/camera_info``          ``sensor_msgs/msg/CameraInfo``   K, R, P of the rectified left camera
``/stereo/right/camera_info``         ``sensor_msgs/msg/CameraInfo``   same, right ``P[3] = -fx * B`` (REP-104)
``/stereo/gt/depth`` (optional)       ``sensor_msgs/msg/Image``        ``32FC1`` ground-truth depth, metres, NaN
                                                                       where unknown (REP-118)
====================================  ===============================  ============================================

All messages of one frame share a header stamp; frames are ``1 / rate`` seconds apart; the bag's log time of each
message equals its header stamp. Frame ids follow REP-103 optical frames (``stereo_left_optical_frame``,
``stereo_right_optical_frame``).
"""

from __future__ import annotations

import functools
import shutil
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from stereo_depth_ros.images import natural_key, pair_stereo_folders, read_image_bgr
from stereo_depth_ros.evaluation.readers import DISPARITY_SUFFIXES, decode_bdis_depth, read_disparity, read_pfm
from stereo_depth_ros.geometry import StereoCameraModel, disparity_to_depth
from stereo_depth_ros.yaml_files import read_yaml

STEREO_NAMESPACE = "/stereo"
LEFT_IMAGE_TOPIC = "/stereo/left/image_rect"
RIGHT_IMAGE_TOPIC = "/stereo/right/image_rect"
LEFT_INFO_TOPIC = "/stereo/left/camera_info"
RIGHT_INFO_TOPIC = "/stereo/right/camera_info"
GT_DEPTH_TOPIC = "/stereo/gt/depth"
INPUT_TOPICS = (LEFT_IMAGE_TOPIC, RIGHT_IMAGE_TOPIC, LEFT_INFO_TOPIC, RIGHT_INFO_TOPIC)

IMAGE_TYPE = "sensor_msgs/msg/Image"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
DISPARITY_TYPE = "stereo_msgs/msg/DisparityImage"
POINT_CLOUD_TYPE = "sensor_msgs/msg/PointCloud2"
TOPIC_TYPES = {LEFT_IMAGE_TOPIC: IMAGE_TYPE, RIGHT_IMAGE_TOPIC: IMAGE_TYPE, LEFT_INFO_TOPIC: CAMERA_INFO_TYPE,
               RIGHT_INFO_TOPIC: CAMERA_INFO_TYPE, GT_DEPTH_TOPIC: IMAGE_TYPE}

LEFT_FRAME_ID = "stereo_left_optical_frame"
RIGHT_FRAME_ID = "stereo_right_optical_frame"
DEPTH_ENCODINGS = ("auto", "bdis")
DEPTH_SUFFIXES = (".npy", ".pfm", ".png", ".tif", ".tiff", ".exr")


@functools.lru_cache(maxsize=1)
def typestore():
    """The rosbags typestore with the ROS 2 Kilted message definitions (the distribution of the installed wheels;
    the sensor_msgs/stereo_msgs definitions and their RIHS01 hashes are the same in Jazzy)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


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


def stereo_camera_infos(calibration: StereoCameraModel, width: int, height: int
                        ) -> tuple[CameraInfoData, CameraInfoData]:
    """camera_info of a rectified pair from a :class:`StereoCameraModel` (no distortion, identity R).

    Both cameras get ``K = [fx 0 cx; 0 fy cy; 0 0 1]`` and ``P = [fx 0 cx Tx; 0 fy cy 0; 0 0 1 0]`` with
    ``Tx = 0`` on the left and ``Tx = -fx * B`` on the right (REP-104, as ``stereo_image_proc`` expects).

    Args:
        calibration: focal length and principal point in pixels, baseline in metres.
        width, height: image size in pixels.

    Returns:
        ``(left, right)`` :class:`CameraInfoData`.
    """
    fx, fy, cx, cy = calibration.focal_px, calibration.fy, calibration.cx, calibration.cy
    k = (fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0)
    r = tuple(float(v) for v in np.eye(3).ravel())
    left_p = (fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0)
    right_p = (fx, 0.0, cx, -fx * calibration.baseline_m, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0)
    zeros = (0.0,) * 5
    return (CameraInfoData(width, height, k, zeros, r, left_p), CameraInfoData(width, height, k, zeros, r, right_p))


def calibration_from_camera_infos(left: CameraInfoData, right: CameraInfoData) -> StereoCameraModel:
    """The rectified-pair calibration in a camera_info pair: ``f = P_left[0]``, ``B = -P_right[3] / P_right[0]``.

    Raises:
        ValueError: if the right ``P[3]`` is not negative (no baseline, or the cameras are swapped) or the sizes
            of the two cameras differ.
    """
    if (left.width, left.height) != (right.width, right.height):
        raise ValueError(f"left camera_info is {left.width}x{left.height} but right is {right.width}x{right.height}")
    if right.p[0] <= 0 or right.p[3] >= 0:
        raise ValueError(f"right camera_info P[3] must be -fx * baseline < 0 (REP-104), got P[0]={right.p[0]}, "
                         f"P[3]={right.p[3]}; are the left and right calibration files swapped?")
    return StereoCameraModel(focal_px=left.p[0], cx=left.p[2], cy=left.p[6], baseline_m=-right.p[3] / right.p[0],
                             focal_y_px=left.p[5])


# ----------------------------------------------------------------------------------------------- messages


def stamp_to_ns(stamp) -> int:
    """``builtin_interfaces/Time`` (anything with ``sec`` and ``nanosec``) -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def header_stamp_from_cdr(raw: bytes | memoryview) -> int:
    """Header stamp (ns) of a serialized message whose first field is a ``std_msgs/Header``, without
    deserializing the rest (Image, CameraInfo, DisparityImage, PointCloud2).

    CDR layout: 4-byte encapsulation (byte 1 is 1 for little-endian), then ``int32 sec``, ``uint32 nanosec``.

    Raises:
        ValueError: if the buffer is shorter than a header stamp.
    """
    if len(raw) < 12:
        raise ValueError(f"serialized message of {len(raw)} bytes is too short to hold a header")
    order = "<" if raw[1] & 1 else ">"
    sec, nanosec = struct.unpack_from(order + "iI", raw, 4)
    return sec * 1_000_000_000 + nanosec


def _header(stamp_ns: int, frame_id: str):
    types = typestore().types
    stamp = types["builtin_interfaces/msg/Time"](sec=int(stamp_ns // 1_000_000_000),
                                                  nanosec=int(stamp_ns % 1_000_000_000))
    return types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def image_message(image: np.ndarray, stamp_ns: int, frame_id: str):
    """A rosbags ``sensor_msgs/msg/Image`` for an array.

    Args:
        image: (H, W, 3) uint8 BGR -> ``bgr8``; (H, W) uint8 -> ``mono8``; (H, W) float32 -> ``32FC1``.
        stamp_ns: header stamp in nanoseconds.
        frame_id: header frame id.

    Raises:
        ValueError: for another shape or dtype.
    """
    image = np.ascontiguousarray(image)
    if image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
        encoding = "bgr8"
    elif image.ndim == 2 and image.dtype == np.uint8:
        encoding = "mono8"
    elif image.ndim == 2 and image.dtype == np.float32:
        encoding = "32FC1"
    else:
        raise ValueError(f"cannot make an Image message from an array of shape {image.shape} and dtype {image.dtype}; "
                         f"expected (H, W, 3) uint8, (H, W) uint8 or (H, W) float32")
    height, width = image.shape[:2]
    return typestore().types[IMAGE_TYPE](
        header=_header(stamp_ns, frame_id), height=height, width=width, encoding=encoding,
        is_bigendian=0, step=image.strides[0], data=image.reshape(-1).view(np.uint8))


def camera_info_message(info: CameraInfoData, stamp_ns: int, frame_id: str):
    """A rosbags ``sensor_msgs/msg/CameraInfo`` for :class:`CameraInfoData` (binning 0, full-image ROI)."""
    types = typestore().types
    roi = types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return types[CAMERA_INFO_TYPE](
        header=_header(stamp_ns, frame_id), height=info.height, width=info.width,
        distortion_model=info.distortion_model, d=np.array(info.d, dtype=np.float64),
        k=np.array(info.k, dtype=np.float64), r=np.array(info.r, dtype=np.float64),
        p=np.array(info.p, dtype=np.float64), binning_x=0, binning_y=0, roi=roi)


def camera_info_from_message(msg) -> CameraInfoData:
    """:class:`CameraInfoData` from a deserialized ``CameraInfo`` message (rosbags or rclpy)."""
    return CameraInfoData(width=int(msg.width), height=int(msg.height), k=tuple(float(v) for v in msg.k),
                          d=tuple(float(v) for v in msg.d), r=tuple(float(v) for v in msg.r),
                          p=tuple(float(v) for v in msg.p), distortion_model=str(msg.distortion_model))


def image_to_array(msg) -> np.ndarray:
    """Pixels of a deserialized ``sensor_msgs/Image`` (rosbags message) as a NumPy array.

    Colour encodings come back as (H, W, 3) uint8 BGR, ``mono8`` as (H, W) uint8, ``32FC1`` as (H, W) float32
    (conversion by ``rosbags-image``, which honours ``step`` and ``is_bigendian``).

    Raises:
        ValueError: for an encoding ``rosbags-image`` cannot convert.
    """
    from rosbags.image import ImageError, message_to_cvimage

    try:
        if msg.encoding in ("rgb8", "bgra8", "rgba8", "bgr8"):
            return np.ascontiguousarray(message_to_cvimage(msg, "bgr8"))
        return np.ascontiguousarray(message_to_cvimage(msg))
    except ImageError as error:
        raise ValueError(f"cannot convert an Image with encoding {msg.encoding!r}: {error}") from error


def deserialize(raw: bytes | memoryview, msgtype: str):
    """Deserialize CDR bytes into a rosbags message of ``msgtype`` (e.g. ``sensor_msgs/msg/Image``).

    Raises:
        ValueError: if the bytes do not hold a message of that type.
    """
    try:
        return typestore().deserialize_cdr(raw, msgtype)
    except Exception as error:  # rosbags raises assorted errors for short or corrupt buffers
        raise ValueError(f"cannot deserialize a {msgtype} message ({len(raw)} bytes): {error}") from error


# ----------------------------------------------------------------------------------------------- writing


@dataclass
class StereoBagSummary:
    """What a stereo bag holds (returned by the writers and by :func:`inspect_stereo_bag`).

    Attributes:
        path: the bag folder.
        frames: number of stereo pairs (left images).
        topics: topic -> (message type, message count).
        width, height: image size in pixels (0 when unknown).
        calibration: the rectified-pair calibration from the camera_info topics, or None.
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


def _prepare_output(path: Path, overwrite: bool) -> None:
    if path.exists():
        looks_like_bag = path.is_dir() and (any(path.glob("*.mcap")) or any(path.glob("*.db3"))
                                            or (path / "metadata.yaml").is_file())
        if not overwrite:
            raise ValueError(f"output bag {path} already exists; remove it, choose another path or pass overwrite")
        if not looks_like_bag:
            raise ValueError(f"refusing to overwrite {path}: it is not a rosbag2 folder")
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)


class StereoBagWriter:
    """Writes frames of a rectified stereo pair into a new rosbag2 MCAP bag (a context manager).

    Args:
        path: bag folder to create (must not exist unless ``overwrite``).
        left_info, right_info: calibration of the rectified pair (:func:`stereo_camera_infos` or YAML).
        frame_id: frame id of the left camera (REP-103 optical frame); the right camera gets ``frame_id`` with
            "left" replaced by "right" (or ``frame_id + "_right"`` when it has no "left").
        with_gt_depth: add the ``/stereo/gt/depth`` topic.
        overwrite: replace an existing bag folder.

    Raises:
        ValueError: if the output exists (without ``overwrite``) or the camera_info pair is not a valid stereo
            calibration (see :func:`calibration_from_camera_infos`).
    """

    def __init__(self, path: str | Path, left_info: CameraInfoData, right_info: CameraInfoData,
                 frame_id: str = LEFT_FRAME_ID, with_gt_depth: bool = False, overwrite: bool = False) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.calibration = calibration_from_camera_infos(left_info, right_info)
        if not frame_id:
            raise ValueError("frame_id must not be empty")
        self.path = Path(path)
        self.left_info, self.right_info = left_info, right_info
        self.frame_id = frame_id
        self.right_frame_id = frame_id.replace("left", "right") if "left" in frame_id else frame_id + "_right"
        self.with_gt_depth = with_gt_depth
        self.frames = 0
        self.start_ns = self.end_ns = 0
        self._counts: Counter = Counter()
        _prepare_output(self.path, overwrite)
        self._writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        topics = list(INPUT_TOPICS) + ([GT_DEPTH_TOPIC] if with_gt_depth else [])
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
                    gt_depth_m: np.ndarray | None = None) -> None:
        """Write one frame: both camera_info messages, both images and (optionally) the ground-truth depth,
        all with header stamp and log time ``stamp_ns``.

        Args:
            stamp_ns: header stamp in nanoseconds; must increase from frame to frame.
            left_bgr, right_bgr: (H, W, 3) uint8 BGR (or (H, W) uint8 grey) of the camera_info size.
            gt_depth_m: (H, W) float depth in metres, NaN where unknown; required when the writer was made
                ``with_gt_depth``, refused otherwise.

        Raises:
            ValueError: for images of another size than the camera_info, different left/right shapes, a missing
                or unexpected depth, or a stamp that does not increase.
        """
        size = (self.left_info.height, self.left_info.width)
        for side, image in (("left", left_bgr), ("right", right_bgr)):
            if image.shape[:2] != size:
                raise ValueError(f"frame {self.frames}: {side} image is {image.shape[1]}x{image.shape[0]} but the "
                                 f"camera_info says {size[1]}x{size[0]}")
        if left_bgr.shape != right_bgr.shape or left_bgr.dtype != right_bgr.dtype:
            raise ValueError(f"frame {self.frames}: left {left_bgr.shape} {left_bgr.dtype} and right "
                             f"{right_bgr.shape} {right_bgr.dtype} images differ")
        if (gt_depth_m is not None) != self.with_gt_depth:
            raise ValueError(f"frame {self.frames}: ground-truth depth is "
                             f"{'missing' if self.with_gt_depth else 'given but the bag was opened without it'}")
        if self.frames and stamp_ns <= self.end_ns:
            raise ValueError(f"frame {self.frames}: stamp {stamp_ns} ns does not increase (last {self.end_ns} ns)")
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
                     total: int | None = None, progress: bool = False) -> StereoBagSummary:
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

    Returns:
        :class:`StereoBagSummary` of the bag written.

    Raises:
        ValueError: for a rate <= 0, no frames, different numbers of left/right images or depths, image/depth
            sizes that disagree with the calibration, or an existing output.
    """
    if not np.isfinite(rate_hz) or rate_hz <= 0:
        raise ValueError(f"rate must be a positive number of frames per second, got {rate_hz}")
    if start_stamp_ns is None:
        start_stamp_ns = time.time_ns() // 1_000_000 * 1_000_000
    period_ns = 1e9 / rate_hz
    left_iter, right_iter = iter(lefts), iter(rights)
    depth_iter = iter(gt_depths) if gt_depths is not None else None
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
                             overwrite=overwrite)
    try:
        index, left = 0, first_left
        while left is not sentinel:
            right = next(right_iter, sentinel)
            if right is sentinel:
                raise ValueError(f"{index} left images but fewer right images")
            depth = next(depth_iter, sentinel) if depth_iter is not None else None
            if depth is sentinel:
                raise ValueError(f"{index + 1} or more stereo pairs but only {index} ground-truth depths")
            writer.write_frame(start_stamp_ns + int(round(index * period_ns)), left, right, depth)
            bar.update()
            index += 1
            left = next(left_iter, sentinel)
        if next(right_iter, sentinel) is not sentinel:
            raise ValueError(f"{index} left images but more right images")
        if depth_iter is not None and next(depth_iter, sentinel) is not sentinel:
            raise ValueError(f"{index} stereo pairs but more ground-truth depths")
    except BaseException:
        writer.close()
        shutil.rmtree(out, ignore_errors=True)  # no half-written bag left behind
        raise
    finally:
        bar.close()
    writer.close()
    return writer.summary()


# ----------------------------------------------------------------------------------------------- folders


def match_ground_truth(images: Sequence[Path], gt_dir: str | Path, suffixes: Sequence[str], what: str
                       ) -> list[Path]:
    """Ground-truth files for the left images: by file stem when every image has a file of the same stem,
    otherwise by position in natural order (which needs as many files as images; this pairs BDIS set 32, whose
    ``depth_0000000.png`` belongs to ``1.png``).

    Raises:
        FileNotFoundError: if the folder does not exist.
        ValueError: if it holds no file of the suffixes, or neither stems nor counts match.
    """
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise FileNotFoundError(f"{what} folder {gt_dir} does not exist")
    files = sorted((p for p in gt_dir.iterdir() if p.is_file() and p.suffix.lower() in suffixes), key=natural_key)
    if not files:
        raise ValueError(f"{what} folder {gt_dir} holds no {'/'.join(suffixes)} file")
    by_stem = {p.stem: p for p in files}
    if all(image.stem in by_stem for image in images):
        return [by_stem[image.stem] for image in images]
    if len(files) != len(images):
        raise ValueError(f"{what} folder {gt_dir} has {len(files)} files for {len(images)} images and their names "
                         f"do not match the images' (e.g. no {images[0].stem}.*): cannot pair them")
    return files


def read_depth(path: str | Path, depth_scale: float = 1.0, encoding: str = "auto") -> np.ndarray:
    """Read a ground-truth depth map and convert it to metres.

    Args:
        path: ``.npy``, ``.pfm``, float ``.tif``/``.tiff``/``.exr`` or 16-bit ``.png`` (encoding "auto"), or a
            BDIS synthetic colour-coded PNG (encoding "bdis", see
            :func:`stereo_depth_ros.evaluation.readers.decode_bdis_depth`).
        depth_scale: metres per stored unit (e.g. 0.001 for millimetre PNGs, 0.01 for BDIS centimetres), > 0.
        encoding: "auto" or "bdis".

    Returns:
        (H, W) float32 depth in metres, NaN where unknown (0, negative, NaN or inf in the file).

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: for a bad scale or encoding, an unsupported suffix, an undecodable file, or a map that is
            not (H, W).
    """
    path = Path(path)
    if not np.isfinite(depth_scale) or depth_scale <= 0:
        raise ValueError(f"depth scale must be a positive number of metres per unit, got {depth_scale}")
    if encoding not in DEPTH_ENCODINGS:
        raise ValueError(f"depth encoding must be one of {DEPTH_ENCODINGS}, got {encoding!r}")
    if not path.is_file():
        raise FileNotFoundError(f"depth file {path} does not exist")
    suffix = path.suffix.lower()
    if encoding == "bdis":
        depth = decode_bdis_depth(path)
    elif suffix == ".npy":
        try:
            depth = np.load(path, allow_pickle=False)
        except Exception as error:  # numpy raises several types for corrupt files
            raise ValueError(f"depth file {path} is not a readable .npy array: {error}") from error
        if not np.issubdtype(depth.dtype, np.number):
            raise ValueError(f"depth file {path} holds {depth.dtype} values, expected numbers")
    elif suffix == ".pfm":
        depth = read_pfm(path)
    elif suffix in (".png", ".tif", ".tiff", ".exr"):
        depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if depth is None:
            raise ValueError(f"depth file {path} could not be decoded")
        if suffix == ".png" and depth.dtype != np.uint16:
            raise ValueError(f"depth file {path} is a {depth.dtype} PNG; a depth PNG must be 16-bit (value * "
                             f"depth scale = metres), or pass encoding 'bdis' for BDIS colour-coded depth")
    else:
        raise ValueError(f"depth file {path} has an unsupported format {suffix!r}; supported: "
                         f"{', '.join(DEPTH_SUFFIXES)}")
    depth = np.asarray(depth)
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2 or depth.size == 0:
        raise ValueError(f"depth file {path} holds an array of shape {depth.shape}, expected (H, W)")
    depth = depth.astype(np.float64) * depth_scale
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    return depth.astype(np.float32)


def make_bag_from_folders(left_dir: str | Path, right_dir: str | Path, out: str | Path, *,
                          camera_info_yamls: tuple[str | Path, str | Path] | None = None,
                          focal_px: float | None = None, baseline_m: float | None = None,
                          cx: float | None = None, cy: float | None = None,
                          gt_disparity_dir: str | Path | None = None, gt_depth_dir: str | Path | None = None,
                          depth_scale: float = 1.0, gt_depth_encoding: str = "auto", rate_hz: float = 10.0,
                          frame_id: str = LEFT_FRAME_ID, start_stamp_ns: int | None = None,
                          overwrite: bool = False, progress: bool = True) -> StereoBagSummary:
    """Write a stereo bag from folders of rectified images (the ``stereo-depth-ros make-bag`` command).

    Calibration: either two camera_calibration_parsers YAML files (left, right; the right projection matrix
    holds ``P[3] = -fx * B``), or ``focal_px`` and ``baseline_m`` (principal point ``cx``, ``cy`` default to the
    image centre ``W / 2``, ``H / 2``).

    Ground truth (optional, one of): ``gt_disparity_dir`` with disparity maps in pixels (``.npy``, ``.pfm``,
    16-bit ``.png`` = value / 256, float ``.tif``; read by
    :func:`stereo_depth_ros.evaluation.readers.read_disparity`), converted to depth ``Z = f * B / d``; or
    ``gt_depth_dir`` with depth maps (see :func:`read_depth`; ``depth_scale`` metres per unit). Ground-truth
    files are paired with the left images by :func:`match_ground_truth`.

    Returns:
        :class:`StereoBagSummary`.

    Raises:
        FileNotFoundError: for a missing folder or file.
        ValueError: for mismatched file names, a missing or double calibration, both ground-truth kinds, sizes
            that disagree, or an existing output.
    """
    pairs = pair_stereo_folders(left_dir, right_dir)
    first = read_image_bgr(pairs[0][0])
    height, width = first.shape[:2]
    if camera_info_yamls is not None:
        if focal_px is not None or baseline_m is not None:
            raise ValueError("give either camera_info YAML files or a focal length and baseline, not both")
        infos = (CameraInfoData.from_yaml(camera_info_yamls[0]), CameraInfoData.from_yaml(camera_info_yamls[1]))
        calibration = calibration_from_camera_infos(*infos)
        if (infos[0].width, infos[0].height) != (width, height):
            raise ValueError(f"camera_info YAML {camera_info_yamls[0]} is for {infos[0].width}x{infos[0].height} "
                             f"images but {pairs[0][0]} is {width}x{height}")
    else:
        if focal_px is None or baseline_m is None:
            raise ValueError("a calibration is needed: camera_info YAML files (left, right) or a focal length in "
                             "pixels and a baseline in metres")
        calibration = StereoCameraModel(focal_px=float(focal_px), baseline_m=float(baseline_m),
                                        cx=width / 2.0 if cx is None else float(cx),
                                        cy=height / 2.0 if cy is None else float(cy))
        infos = stereo_camera_infos(calibration, width, height)
    if gt_disparity_dir is not None and gt_depth_dir is not None:
        raise ValueError("give either ground-truth disparity or ground-truth depth, not both")
    lefts = [left for left, _ in pairs]
    gt_depths = None
    if gt_disparity_dir is not None:
        gt_files = match_ground_truth(lefts, gt_disparity_dir, DISPARITY_SUFFIXES, "ground-truth disparity")
        gt_depths = (disparity_to_depth(read_disparity(p), calibration.focal_px, calibration.baseline_m)
                     for p in gt_files)
    elif gt_depth_dir is not None:
        suffixes = (".png",) if gt_depth_encoding == "bdis" else DEPTH_SUFFIXES
        gt_files = match_ground_truth(lefts, gt_depth_dir, suffixes, "ground-truth depth")
        read_depth(gt_files[0], depth_scale, gt_depth_encoding)  # fail early on a bad scale or encoding
        gt_depths = (read_depth(p, depth_scale, gt_depth_encoding) for p in gt_files)
    return write_stereo_bag(out, (read_image_bgr(p) for p in lefts), (read_image_bgr(p) for _, p in pairs),
                            infos, gt_depths=gt_depths, rate_hz=rate_hz, frame_id=frame_id,
                            start_stamp_ns=start_stamp_ns, overwrite=overwrite, total=len(pairs),
                            progress=progress)


# ----------------------------------------------------------------------------------------------- sample data

#: Calibration of scikit-image's Middlebury 2014 Motorcycle pair (741x500, a quarter of the full size), as the
#: docstring of ``skimage.data.stereo_motorcycle`` gives it: focal length 994.978 px, principal point
#: (311.193, 254.877) px, baseline 193.001 mm. Its ``doffs`` of 31.086 px (the principal points of the two
#: cameras differ) is *not* used: this package's depth is ``Z = f * B / d``, so the ground-truth depth of the demo
#: is defined the same way, which makes it comparable with the node's depth, not the scene's metric depth.
MOTORCYCLE_CALIBRATION = StereoCameraModel(focal_px=994.978, cx=311.193, cy=254.877, baseline_m=0.193001)


def motorcycle_pair(scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, StereoCameraModel]:
    """scikit-image's real Middlebury 2014 Motorcycle pair with ground truth, optionally downscaled.

    Args:
        scale: resize factor in (0, 1]; focal length, principal point and disparities scale with it (the
            baseline does not).

    Returns:
        ``(left_bgr, right_bgr, gt_depth_m, calibration)``: (H, W, 3) uint8 BGR images (500x741 at scale 1),
        (H, W) float32 ground-truth depth ``Z = f * B / d`` in metres with NaN where the disparity is unknown,
        and the :class:`StereoCameraModel` (see :data:`MOTORCYCLE_CALIBRATION`).

    Raises:
        ValueError: if ``scale`` is not in (0, 1].
    """
    from skimage.data import stereo_motorcycle

    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    left_rgb, right_rgb, disparity = stereo_motorcycle()
    left, right = left_rgb[..., ::-1].copy(), right_rgb[..., ::-1].copy()
    disparity = np.asarray(disparity, dtype=np.float32).copy()
    disparity[~np.isfinite(disparity)] = np.nan  # scikit-image marks unknown pixels with inf as well as NaN
    base = MOTORCYCLE_CALIBRATION
    if scale != 1:
        size = (max(1, round(left.shape[1] * scale)), max(1, round(left.shape[0] * scale)))
        left = cv2.resize(left, size, interpolation=cv2.INTER_AREA)
        right = cv2.resize(right, size, interpolation=cv2.INTER_AREA)
        # nearest keeps unknown (NaN) pixels from bleeding into their neighbours
        disparity = cv2.resize(disparity, size, interpolation=cv2.INTER_NEAREST) * np.float32(scale)
    calibration = StereoCameraModel(focal_px=base.focal_px * scale, cx=base.cx * scale, cy=base.cy * scale,
                                    baseline_m=base.baseline_m)
    depth = disparity_to_depth(disparity, calibration.focal_px, calibration.baseline_m)
    return left, right, depth, calibration


# ----------------------------------------------------------------------------------------------- reading


@dataclass
class BagMessage:
    """One message of a bag: topic, type, log time (ns) and the serialized CDR bytes."""

    topic: str
    msgtype: str
    log_time_ns: int
    raw: bytes


def _open_reader(path: Path):
    from rosbags.rosbag2 import Reader

    if not path.exists():
        raise FileNotFoundError(f"bag {path} does not exist")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as error:  # rosbags raises ReaderError, but also KeyError/struct errors for damaged files
        raise ValueError(f"cannot open bag {path}: it is not a rosbag2 folder, or it is truncated or damaged "
                         f"({error}); a recording that was cut off may be repaired with 'ros2 bag reindex'"
                         ) from error
    return reader


def iter_bag_messages(path: str | Path, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
    """Messages of a rosbag2 bag (MCAP or SQLite) in log-time order.

    Args:
        path: bag folder (with ``metadata.yaml``).
        topics: only these topics (default all).

    Raises:
        FileNotFoundError: if the bag does not exist.
        ValueError: if it cannot be opened, or is truncated or damaged (raised when the damage is reached).
    """
    path = Path(path)
    reader = _open_reader(path)
    try:
        wanted = set(topics) if topics is not None else None
        connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if not connections:
            return
        try:
            for connection, timestamp, raw in reader.messages(connections=connections):
                yield BagMessage(connection.topic, connection.msgtype, int(timestamp), bytes(raw))
        except Exception as error:  # damaged chunk, truncated file, bad compression ...
            raise ValueError(f"bag {path} is truncated or damaged: {type(error).__name__}: {error}") from error
    finally:
        reader.close()


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
    reader = _open_reader(path)
    try:
        declared = {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}
    finally:
        reader.close()
    missing = [t for t in INPUT_TOPICS if t not in declared]
    if require_stereo and missing:
        raise ValueError(f"bag {path} lacks the stereo topics {missing}; it has {sorted(declared) or 'no topics'}. "
                         f"Make a stereo bag with 'stereo-depth-ros make-bag'")
    for topic in INPUT_TOPICS + (GT_DEPTH_TOPIC,):
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
        calibration = calibration_from_camera_infos(infos[LEFT_INFO_TOPIC], infos[RIGHT_INFO_TOPIC])
    return StereoBagSummary(path=path, frames=len(left_stamps),
                            topics={t: (declared[t][0], counts[t]) for t in declared}, width=width, height=height,
                            calibration=calibration, start_ns=min(left_stamps, default=0),
                            end_ns=max(left_stamps, default=0), has_gt_depth=counts[GT_DEPTH_TOPIC] > 0)


class RawBagRecorder:
    """Records serialized (CDR) messages into a new rosbag2 MCAP bag; thread-safe (ROS callbacks may call
    :meth:`write` from several executor threads).

    Topics are registered with their message definitions and RIHS01 type hashes from the typestore, so
    ``ros2 bag play``, rosbags and Foxglove can decode them.

    Args:
        path: bag folder to create.
        topics: topic -> message type, e.g. ``{"/stereo/depth": "sensor_msgs/msg/Image"}``.
        overwrite: replace an existing bag folder.

    Raises:
        ValueError: for an existing output or a message type the typestore does not know.
    """

    def __init__(self, path: str | Path, topics: dict[str, str], overwrite: bool = False) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        for topic, msgtype in topics.items():
            if msgtype not in typestore().types:
                raise ValueError(f"topic {topic}: unknown message type {msgtype}")
        self.path = Path(path)
        _prepare_output(self.path, overwrite)
        self._lock = threading.Lock()
        self._writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._connections = {t: self._writer.add_connection(t, m, typestore=typestore()) for t, m in topics.items()}
        self.counts: Counter = Counter()

    def write(self, topic: str, log_time_ns: int, raw: bytes | memoryview) -> None:
        """Append one serialized message (ignored after :meth:`close`).

        Raises:
            KeyError: for a topic that was not registered.
        """
        with self._lock:
            if self._writer is None:
                return
            self._writer.write(self._connections[topic], int(log_time_ns), bytes(raw))
            self.counts[topic] += 1

    def close(self) -> None:
        """Finish the bag; safe to call twice."""
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None


def read_topic_by_stamp(path: str | Path, topic: str) -> dict[int, bytes]:
    """Serialized messages of one topic keyed by their header stamp in nanoseconds (later duplicates win).

    Raises:
        FileNotFoundError, ValueError: as :func:`iter_bag_messages`.
    """
    return {header_stamp_from_cdr(m.raw): m.raw for m in iter_bag_messages(path, [topic])}
