"""Pure NumPy <-> ROS message conversions for the stereo node (no node, no spinning; testable on their own).

Images (``sensor_msgs/Image``):

- :func:`image_to_numpy` decodes the encodings this package reads and writes (``bgr8``, ``rgb8``, ``mono8``,
  ``bgra8``, ``rgba8``, ``mono16``, ``32FC1``), honouring ``step`` (row padding) and ``is_bigendian``.
- :func:`image_to_bgr8` turns an input camera image into the (H, W, 3) uint8 BGR array the estimators take. It
  accepts the 8- and 16-bit camera encodings above and rejects everything else, float images included, with an
  :class:`InputError` that names the field.
- :func:`numpy_to_image` encodes an array (``32FC1`` for disparity and depth, or any encoding above).

cv_bridge (``CvBridge.imgmsg_to_cv2(msg, "passthrough")``) is used to decode when it is importable; otherwise our
own decoder, which follows REP-104 / ``sensor_msgs/image_encodings.hpp``, does the same job. Both are checked
first by :func:`check_image` so the error messages are the same either way.

Stereo messages: :func:`camera_info_calibration` (focal length and baseline from a ``camera_info`` pair, as
image_geometry's ``StereoCameraModel`` reads them), :func:`make_disparity_image` (``stereo_msgs/DisparityImage``
filled like stereo_image_proc fills it), :func:`make_point_cloud2` / :func:`point_cloud2_to_array` (organised
``sensor_msgs/PointCloud2`` with float32 x, y, z and packed rgb, the layout of stereo_image_proc's ``points2`` and
PCL's ``PointXYZRGB``).
"""

from __future__ import annotations

import array
import sys
from dataclasses import dataclass

import cv2
import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField, RegionOfInterest
from std_msgs.msg import Header
from stereo_msgs.msg import DisparityImage

from stereo_depth_ros.geometry import StereoCameraModel

try:  # cv_bridge is optional: our own decoder below has the same semantics for the encodings we accept.
    from cv_bridge import CvBridge as _CvBridge
except ImportError:  # pragma: no cover - depends on the installation
    _CvBridge = None

#: encoding -> (NumPy dtype of one channel, number of channels), as in sensor_msgs/image_encodings.hpp.
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "bgr8": (np.dtype(np.uint8), 3),
    "rgb8": (np.dtype(np.uint8), 3),
    "bgra8": (np.dtype(np.uint8), 4),
    "rgba8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}
#: Encodings accepted as camera input (:func:`image_to_bgr8`).
INPUT_ENCODINGS = ("bgr8", "rgb8", "mono8", "bgra8", "rgba8", "mono16")

_FLOAT_ENCODING_PREFIXES = ("32F", "64F")
_HOST_IS_BIGENDIAN = sys.byteorder == "big"
# PointField datatypes -> NumPy (sensor_msgs/PointField constants).
_POINT_FIELD_DTYPES = {
    PointField.INT8: np.int8, PointField.UINT8: np.uint8, PointField.INT16: np.int16,
    PointField.UINT16: np.uint16, PointField.INT32: np.int32, PointField.UINT32: np.uint32,
    PointField.FLOAT32: np.float32, PointField.FLOAT64: np.float64,
}


class InputError(ValueError):
    """A message the node cannot use; ``kind`` is a short key for counters, the message names the field.

    Attributes:
        kind: one of "encoding", "empty_image", "image_layout", "image_size", "camera_info_size",
            "calibration", or another short key set by the caller.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# ----------------------------------------------------------------------------------------------------- images


def check_image(msg: Image, name: str = "image") -> tuple[np.dtype, int]:
    """Validate an Image's encoding and layout before decoding.

    Args:
        msg: the ``sensor_msgs/Image``.
        name: how to call it in error messages (e.g. the topic, "left/image_rect").

    Returns:
        ``(channel dtype, channels)`` of its encoding.

    Raises:
        InputError: kind "encoding" for an encoding not in :data:`ENCODINGS`; "empty_image" for height or width 0
            or no data; "image_layout" when ``step`` is smaller than ``width * bytes per pixel`` or ``data`` is
            shorter than ``step * height``.
    """
    encoding = msg.encoding
    if encoding not in ENCODINGS:
        raise InputError("encoding", f"{name}: unsupported encoding {encoding!r} (field 'encoding'); "
                                     f"supported: {', '.join(ENCODINGS)}")
    dtype, channels = ENCODINGS[encoding]
    if msg.height == 0 or msg.width == 0:
        raise InputError("empty_image", f"{name}: empty image (fields 'height' x 'width' = "
                                        f"{msg.height} x {msg.width})")
    if len(msg.data) == 0:
        raise InputError("empty_image", f"{name}: empty image (field 'data' has 0 bytes for "
                                        f"{msg.height} x {msg.width} {encoding})")
    row_bytes = msg.width * channels * dtype.itemsize
    if msg.step < row_bytes:
        raise InputError("image_layout", f"{name}: field 'step' = {msg.step} bytes is smaller than width "
                                         f"{msg.width} x {channels * dtype.itemsize} bytes per {encoding} pixel "
                                         f"= {row_bytes}")
    if len(msg.data) < msg.step * msg.height:
        raise InputError("image_layout", f"{name}: field 'data' has {len(msg.data)} bytes, fewer than "
                                         f"'step' x 'height' = {msg.step} x {msg.height} = "
                                         f"{msg.step * msg.height}")
    return dtype, channels


def image_to_numpy(msg: Image, name: str = "image") -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` into an array in its own encoding (no colour conversion).

    Args:
        msg: Image with an encoding from :data:`ENCODINGS`; any ``step`` >= row size and either byte order.
        name: how to call it in error messages.

    Returns:
        (H, W) for one channel or (H, W, C), dtype of the encoding (uint8, uint16 or float32) in the host's byte
        order, C-contiguous; channel order as the encoding says (``rgb8`` stays RGB). Read-only: when no
        conversion is needed (no row padding, host byte order) it shares memory with ``msg.data`` (no copy).

    Raises:
        InputError: see :func:`check_image`.
    """
    dtype, channels = check_image(msg, name)
    shape = (msg.height, msg.width) if channels == 1 else (msg.height, msg.width, channels)
    if _CvBridge is not None:
        pixels = np.ascontiguousarray(_CvBridge().imgmsg_to_cv2(msg, desired_encoding="passthrough"), dtype=dtype)
    else:
        raw = np.frombuffer(msg.data, dtype=np.uint8, count=msg.step * msg.height).reshape(msg.height, msg.step)
        row_bytes = msg.width * channels * dtype.itemsize
        # Drop the row padding (a copy only when there is padding), reinterpret as the wire dtype, then convert
        # to the host byte order (a copy only when they differ).
        rows = np.ascontiguousarray(raw[:, :row_bytes])
        wire_dtype = dtype.newbyteorder(">" if msg.is_bigendian else "<")
        pixels = rows.view(wire_dtype).astype(dtype, copy=False)
    pixels = pixels.reshape(shape)
    pixels.flags.writeable = False
    return pixels


def image_to_bgr8(msg: Image, name: str = "image") -> np.ndarray:
    """Decode a camera image into the (H, W, 3) uint8 BGR array the estimators take.

    ``rgb8``/``rgba8``/``bgra8`` are reordered (alpha dropped), ``mono8`` is replicated to three channels,
    ``mono16`` keeps its 8 most significant bits (value / 256, what cv_bridge's conversion to ``mono8`` does;
    12-bit data stored in 16 bits therefore looks dark).

    Raises:
        InputError: kind "encoding" for any other encoding; float images (``32FC1``, ``64FC1``...) are depth or
            disparity maps, not camera images, and are rejected with a message saying so. Other kinds: see
            :func:`check_image`.
    """
    if msg.encoding not in INPUT_ENCODINGS:
        if msg.encoding.startswith(_FLOAT_ENCODING_PREFIXES):
            raise InputError("encoding", f"{name}: encoding {msg.encoding!r} (field 'encoding') is a float image "
                                         f"(a depth or disparity map?), not a camera image; expected one of "
                                         f"{', '.join(INPUT_ENCODINGS)}")
        raise InputError("encoding", f"{name}: unsupported encoding {msg.encoding!r} (field 'encoding'); "
                                     f"expected one of {', '.join(INPUT_ENCODINGS)}")
    pixels = image_to_numpy(msg, name)
    encoding = msg.encoding
    if encoding == "bgr8":
        return pixels
    if encoding == "rgb8":
        return cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    if encoding == "bgra8":
        return cv2.cvtColor(pixels, cv2.COLOR_BGRA2BGR)
    if encoding == "rgba8":
        return cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGR)
    if encoding == "mono16":
        pixels = (pixels >> 8).astype(np.uint8)
    return cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)


def numpy_to_image(pixels: np.ndarray, encoding: str = "32FC1", header: Header | None = None,
                   data: array.array | None = None) -> Image:
    """Encode an array as a ``sensor_msgs/Image`` (host byte order, no row padding).

    Args:
        pixels: (H, W) for ``32FC1``/``mono8``/``mono16``, (H, W, 3) for ``bgr8``/``rgb8``, (H, W, 4) for
            ``bgra8``/``rgba8``; converted to the encoding's dtype (float32 for ``32FC1``: metres or pixels, NaN
            kept).
        encoding: one of :data:`ENCODINGS`.
        header: stamp and frame_id to put on the message (an empty Header if None).
        data: an ``array('B')`` of exactly ``height * step`` bytes to write the pixels into and use as the
            message's ``data`` (a caller that publishes every message before building the next reuses one buffer
            and saves the page faults of a fresh one per frame); None = a new array.

    Returns:
        Image with ``step = width * bytes per pixel`` and ``is_bigendian`` of this host.

    Raises:
        ValueError: for an unknown encoding or an array whose shape does not fit it.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"unsupported encoding {encoding!r}; supported: {', '.join(ENCODINGS)}")
    dtype, channels = ENCODINGS[encoding]
    pixels = np.asarray(pixels)
    expected_ndim = 2 if channels == 1 else 3
    if pixels.ndim != expected_ndim or (channels > 1 and pixels.shape[2] != channels):
        raise ValueError(f"encoding {encoding!r} needs an array of shape "
                         f"{'(H, W)' if channels == 1 else f'(H, W, {channels})'}, got {pixels.shape}")
    pixels = np.ascontiguousarray(pixels, dtype=dtype)
    # check_fields=True: rclpy then keeps the array('B') given to 'data' as it is; by default its setter copies
    # it into a new array (21 MB for a 1280x1024 point cloud, paid again in page faults every frame).
    msg = Image(check_fields=True)
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = _HOST_IS_BIGENDIAN
    msg.step = msg.width * channels * dtype.itemsize
    msg.data = _to_byte_array(pixels, data)
    return msg


def _to_byte_array(pixels: np.ndarray, data: array.array | None = None) -> array.array:
    """One copy of a contiguous array into the ``array('B')`` rclpy stores uint8[] fields in (fast path): a new
    one, or ``data`` when given (it must have exactly the array's size in bytes).

    Raises:
        ValueError: when ``data`` has another size.
    """
    if data is None:
        data = array.array("B")
        data.frombytes(memoryview(np.ascontiguousarray(pixels)).cast("B"))
        return data
    if len(data) != pixels.nbytes:
        raise ValueError(f"output buffer has {len(data)} bytes, the message needs {pixels.nbytes}")
    np.copyto(np.frombuffer(data, dtype=pixels.dtype).reshape(pixels.shape), pixels)
    return data


def reusable_buffer(buffers: dict, key: str, nbytes: int) -> array.array:
    """The ``array('B')`` of ``nbytes`` kept in ``buffers[key]`` (a new one when absent or of another size), for
    the ``data`` argument of :func:`numpy_to_image` and :func:`make_point_cloud2`."""
    data = buffers.get(key)
    if data is None or len(data) != nbytes:
        data = buffers[key] = array.array("B", bytes(nbytes))
    return data


# ------------------------------------------------------------------------------------------------ camera_info


@dataclass(frozen=True)
class StereoCameraInfo:
    """What the node reads from a left/right ``camera_info`` pair.

    Attributes:
        calibration: the :class:`~stereo_depth_ros.geometry.StereoCameraModel` (focal lengths, both principal
            points, baseline), or None when the pair carries no usable calibration (then ``problem`` says which
            field).
        focal_px: ``f`` for ``DisparityImage`` (left ``P[0]``), 0.0 when uncalibrated.
        baseline_m: ``t`` for ``DisparityImage`` (``-P[3] / P[0]`` of the right camera), 0.0 when uncalibrated.
        principal_point_offset_px: ``cx_left - cx_right`` (``P[2]``), subtracted from the image disparity as
            stereo_image_proc does (``d = x_l - x_r - (cx_l - cx_r)``); 0.0 when uncalibrated.
        problem: None, or why there is no calibration, naming the field.
    """

    calibration: StereoCameraModel | None
    focal_px: float
    baseline_m: float
    principal_point_offset_px: float
    problem: str | None


def stereo_camera_info_messages(camera: StereoCameraModel, width: int, height: int, header: Header
                                ) -> tuple[CameraInfo, CameraInfo]:
    """The left and right ``sensor_msgs/CameraInfo`` of a rectified pair (REP-104, no distortion, identity R).

    ``K = [fx 0 cx; 0 fy cy; 0 0 1]`` and ``P = [fx 0 cx Tx; 0 fy cy 0; 0 0 1 0]`` with each camera's own ``cx``
    and ``Tx = 0`` on the left, ``Tx = -fx * baseline`` on the right: the inverse of :func:`camera_info_calibration`.

    Args:
        camera: focal lengths and principal points in pixels, baseline in metres.
        width, height: image size in pixels.
        header: stamp and frame_id put on both messages.

    Example:
        >>> left, right = stereo_camera_info_messages(StereoCameraModel(fx=500.0, cx=320.0, cy=240.0,
        ...                                           baseline_m=0.004), 640, 480, Header())
        >>> float(-right.p[3] / right.p[0]), camera_info_calibration(left, right).baseline_m
        (0.004, 0.004)
    """
    messages = []
    for cx, tx in ((camera.cx, 0.0), (camera.cx_right, -camera.fx * camera.baseline_m)):
        info = CameraInfo(header=header, width=int(width), height=int(height), distortion_model="plumb_bob")
        info.d = [0.0] * 5
        info.k = [camera.fx, 0.0, cx, 0.0, camera.fy, camera.cy, 0.0, 0.0, 1.0]
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [camera.fx, 0.0, cx, tx, 0.0, camera.fy, camera.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
        messages.append(info)
    return messages[0], messages[1]


def camera_info_calibration(left: CameraInfo, right: CameraInfo) -> StereoCameraInfo:
    """Read the rectified stereo calibration from a ``camera_info`` pair with
    :meth:`StereoCameraModel.from_camera_info <stereo_depth_ros.geometry.StereoCameraModel.from_camera_info>`
    (image_geometry's conventions: ``fx = P[0]``, ``fy = P[5]``, ``cx = P[2]``, ``cy = P[6]``, right
    ``P[3] = Tx = -fx * B``; REP-104, sensor_msgs/CameraInfo).

    Returns:
        :class:`StereoCameraInfo`. A pair without calibration is not an error here (the node still publishes
        disparity): ``calibration`` is None and ``problem`` names the field (``K``/``P`` all zero, ``P[0]`` or
        ``P[5]`` not positive, right ``P[3]`` zero or positive, different image sizes).
    """
    try:
        camera = StereoCameraModel.from_camera_info(left, right)
    except ValueError as error:
        return _uncalibrated(str(error))
    return StereoCameraInfo(calibration=camera, focal_px=camera.fx, baseline_m=camera.baseline_m,
                            principal_point_offset_px=camera.principal_point_offset, problem=None)


def _uncalibrated(problem: str) -> StereoCameraInfo:
    return StereoCameraInfo(calibration=None, focal_px=0.0, baseline_m=0.0, principal_point_offset_px=0.0,
                            problem=problem)


def check_camera_info_size(info: CameraInfo, image: Image, side: str) -> None:
    """Check that a ``camera_info`` describes images of this size.

    A camera_info with width and height both 0 (size not set, e.g. an uncalibrated driver) passes.

    Raises:
        InputError: kind "camera_info_size", naming the fields (and binning/ROI, which this node does not
            apply, when they are set).
    """
    if info.width == 0 and info.height == 0:
        return
    if (info.width, info.height) == (image.width, image.height):
        return
    extra = ""
    if info.binning_x > 1 or info.binning_y > 1 or info.roi.width or info.roi.height:
        extra = (f"; it sets binning ({info.binning_x}, {info.binning_y}) or roi ({info.roi.width} x "
                 f"{info.roi.height}), which this node does not apply: publish full-size rectified images")
    raise InputError("camera_info_size", f"{side} camera_info fields 'width' x 'height' = {info.width} x "
                                         f"{info.height} do not match the {side} image {image.width} x "
                                         f"{image.height}{extra}")


def stereo_pair_to_bgr8(left_image: Image, right_image: Image, left_info: CameraInfo, right_info: CameraInfo,
                        topics: tuple[str, str] = ("left/image_rect", "right/image_rect")
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Decode a rectified pair to (H, W, 3) uint8 BGR and check it against its camera_info (every stereo input node).

    Args:
        left_image, right_image: the two images (any encoding :func:`image_to_bgr8` reads).
        left_info, right_info: their camera_info, whose size must match (or be unset: 0 x 0).
        topics: the two images' topic names, for messages.

    Returns:
        ``(left_bgr, right_bgr)``.

    Raises:
        InputError: kinds of :func:`image_to_bgr8`, "image_size" (the two images differ, naming the fields) and
            "camera_info_size" (:func:`check_camera_info_size`).
    """
    left = image_to_bgr8(left_image, topics[0])
    right = image_to_bgr8(right_image, topics[1])
    if left.shape != right.shape:
        raise InputError("image_size", f"left and right images differ in size (fields 'width' x 'height'): "
                                       f"{left_image.width} x {left_image.height} vs {right_image.width} x "
                                       f"{right_image.height}")
    check_camera_info_size(left_info, left_image, "left")
    check_camera_info_size(right_info, right_image, "right")
    return left, right


# ---------------------------------------------------------------------------------------------- stereo output


def make_disparity_image(disparity: np.ndarray, header: Header, focal_px: float, baseline_m: float,
                         min_disparity: float, max_disparity: float, delta_d: float,
                         valid_window: tuple[int, int, int, int] | None = None,
                         data: array.array | None = None) -> DisparityImage:
    """Build a ``stereo_msgs/DisparityImage`` the way stereo_image_proc fills it.

    Args:
        disparity: (H, W) float, pixels, ``d = x_l - x_r - (cx_l - cx_r)``; NaN where invalid (stereo_image_proc
            writes ``min_disparity - 1`` there instead; see docs/ros_interface.md).
        header: stamp and frame_id (left optical frame), put on the message and on its ``image``.
        focal_px: ``f`` in pixels (0.0 when uncalibrated, as stereo_image_proc does).
        baseline_m: ``t`` in metres (0.0 when uncalibrated).
        min_disparity, max_disparity: the searched range, pixels.
        delta_d: smallest disparity increment, pixels.
        valid_window: ``(x_offset, y_offset, width, height)`` of the region that can hold valid disparities;
            the whole image if None.
        data: reusable byte buffer for ``image.data`` (see :func:`numpy_to_image`), or None.

    Returns:
        DisparityImage with a 32FC1 ``image``.

    Raises:
        ValueError: if ``disparity`` is not 2-D.
    """
    if np.ndim(disparity) != 2:
        raise ValueError(f"disparity must be (H, W), got shape {np.shape(disparity)}")
    msg = DisparityImage()
    msg.header = header
    msg.image = numpy_to_image(disparity, "32FC1", header, data)
    msg.f = float(focal_px)
    msg.t = float(baseline_m)
    h, w = disparity.shape
    x, y, width, height = valid_window if valid_window is not None else (0, 0, w, h)
    msg.valid_window = RegionOfInterest(x_offset=int(x), y_offset=int(y), width=int(width), height=int(height))
    msg.min_disparity = float(min_disparity)
    msg.max_disparity = float(max_disparity)
    msg.delta_d = float(delta_d)
    return msg


POINT_STEP = 16  #: bytes per point of :func:`make_point_cloud2`: x, y, z, rgb float32 (or 4 bytes padding)


def point_cloud_fields(with_rgb: bool = True) -> list[PointField]:
    """``x``, ``y``, ``z`` float32 at offsets 0, 4, 8 and, with ``with_rgb``, ``rgb`` at 12.

    ``rgb`` has datatype FLOAT32 holding the bits of ``0x00RRGGBB`` (PCL's and stereo_image_proc's convention,
    what RViz's RGB8 colour transformer reads).
    """
    fields = [PointField(name=axis, offset=4 * i, datatype=PointField.FLOAT32, count=1)
              for i, axis in enumerate("xyz")]
    if with_rgb:
        fields.append(PointField(name="rgb", offset=12, datatype=PointField.FLOAT32, count=1))
    return fields


def pack_rgb(colors_bgr: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 BGR -> (...) uint32 ``0x00RRGGBB``."""
    c = np.asarray(colors_bgr, dtype=np.uint32)
    return (c[..., 2] << 16) | (c[..., 1] << 8) | c[..., 0]


def pack_rgb_float(colors_bgr: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 BGR -> (H, W) float32 whose bits are ``0x00RRGGBB`` (the ``rgb`` field's value).

    On a little-endian host the bytes of a uint32 ``0x00RRGGBB`` are B, G, R, 0, i.e. BGRA with alpha 0, so
    OpenCV's BGR -> BGRA conversion does the packing (about 20 times faster than shifting in NumPy).
    """
    if _HOST_IS_BIGENDIAN or colors_bgr.ndim != 3:
        return pack_rgb(colors_bgr).view(np.float32)
    bgra = cv2.cvtColor(np.ascontiguousarray(colors_bgr, dtype=np.uint8), cv2.COLOR_BGR2BGRA)
    bgra[..., 3] = 0
    return bgra.view(np.float32)[..., 0]


def make_point_cloud2(points: np.ndarray, header: Header, colors_bgr: np.ndarray | None = None,
                      data: array.array | None = None) -> PointCloud2:
    """Build an organised ``sensor_msgs/PointCloud2`` (height x width, one point per pixel).

    Layout (point_step 16, row_step 16 * width, host byte order, ``is_dense`` false): float32 ``x``, ``y``, ``z``
    at offsets 0, 4, 8 in metres; with colours, ``rgb`` at offset 12 (see :func:`point_cloud_fields`); without,
    the 4 bytes at offset 12 are padding and there is no ``rgb`` field (the layout of PCL's ``PointXYZ``).
    Invalid points (any coordinate non-finite) have x, y, z and rgb all NaN, as stereo_image_proc writes them.

    Args:
        points: (H, W, 3) float, metres, NaN where invalid (``reproject_disparity_to_points``).
        header: stamp and frame_id (the left optical frame).
        colors_bgr: (H, W, 3) uint8 BGR of the left image, or None for a cloud without ``rgb``.
        data: an ``array('B')`` of exactly ``16 * H * W`` bytes to build the cloud in and use as the message's
            ``data`` (reused by a caller that publishes each message before building the next), or None for a
            new one.

    Raises:
        ValueError: for shapes that do not fit, or ``data`` of another size.
    """
    if points.ndim != 3 or points.shape[2] != 3:
        raise ValueError(f"points must be (H, W, 3), got shape {points.shape}")
    h, w = points.shape[:2]
    if colors_bgr is not None and colors_bgr.shape != (h, w, 3):
        raise ValueError(f"colors_bgr must be (H, W, 3) = ({h}, {w}, 3) like points, got {colors_bgr.shape}")
    points = np.asarray(points, dtype=np.float32)
    # 0 where the point is valid, NaN where any coordinate is NaN or infinite (inf * 0 = NaN).
    with np.errstate(invalid="ignore", over="ignore"):
        invalid = np.isnan((points[..., 0] + points[..., 1] + points[..., 2]) * np.float32(0.0))
    if colors_bgr is not None:
        rgb = pack_rgb_float(colors_bgr)
        np.copyto(rgb, np.float32(np.nan), where=invalid)
    else:
        rgb = np.zeros((h, w), dtype=np.float32)
    # Written once, straight into the message's byte array: x, y, z by OpenCV's 3 -> 4 channel copy, then rgb.
    # (Building it with NumPy temporaries and a final copy cost several times more at 1280x1024: every fresh
    # 21 MB buffer is paid in page faults, which is also why a caller may pass a reused one.)
    if data is None:
        data = array.array("B", bytes(h * w * POINT_STEP))
    elif len(data) != h * w * POINT_STEP:
        raise ValueError(f"point cloud buffer has {len(data)} bytes, a {w} x {h} cloud needs {h * w * POINT_STEP}")
    cloud = np.frombuffer(data, dtype=np.float32).reshape(h, w, 4)
    cv2.cvtColor(points if points.flags.c_contiguous else np.ascontiguousarray(points), cv2.COLOR_BGR2BGRA,
                 dst=cloud)
    cloud[..., 3] = rgb
    # Points from reproject_disparity_to_points are all-NaN where invalid already; a point with only some
    # coordinates non-finite (rare) is made all-NaN here.
    partial = invalid & ~np.isnan(points[..., 2])
    if partial.any():
        cloud[partial, :3] = np.nan
    return _point_cloud_message(header, h, w, colors_bgr is not None, data)


def _point_cloud_message(header: Header, height: int, width: int, with_rgb: bool, data: array.array) -> PointCloud2:
    """The organised PointCloud2 around a filled ``16 * height * width``-byte buffer (x, y, z[, rgb] float32)."""
    msg = PointCloud2(check_fields=True)  # keeps 'data' without a copy (see numpy_to_image)
    msg.header = header
    msg.height, msg.width = int(height), int(width)
    msg.fields = point_cloud_fields(with_rgb)
    msg.is_bigendian = _HOST_IS_BIGENDIAN
    msg.point_step = POINT_STEP
    msg.row_step = POINT_STEP * int(width)
    msg.is_dense = False
    msg.data = data
    return msg


def make_point_cloud2_from_depth(depth: np.ndarray, camera: StereoCameraModel, header: Header,
                                 colors_bgr: np.ndarray | None = None, data: array.array | None = None
                                 ) -> PointCloud2:
    """Build the organised ``sensor_msgs/PointCloud2`` of a depth map, reprojecting it straight into the message.

    The same cloud as ``make_point_cloud2(reproject_disparity_to_points(d, camera, ...), ...)`` for the depth
    ``Z = f B / d`` of that disparity (``X = (u - cx) Z / fx``, ``Y = (v - cy) Z / fy``, the left optical frame,
    REP-103), computed without the (H, W, 3) intermediate: at 1280x1024 the node needs the depth anyway, and each
    extra full-size pass or fresh buffer costs milliseconds (docs/benchmarks.md).

    Args:
        depth: (H, W) float32 metres along the optical axis; any non-finite value (NaN, or REP-117's +-inf out of
            range) makes the point invalid: x, y, z and rgb all NaN.
        camera: the rectified pair (``fx``, ``fy``, ``cx``, ``cy`` of the left camera).
        header: stamp and frame_id (the left optical frame).
        colors_bgr: (H, W, 3) uint8 BGR of the left image, or None for a cloud without ``rgb``.
        data: reusable ``array('B')`` of ``16 * H * W`` bytes (see :func:`make_point_cloud2`), or None.

    Returns:
        PointCloud2 with the layout of :func:`make_point_cloud2`.

    Raises:
        ValueError: for shapes that do not fit, or ``data`` of another size.
    """
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
    h, w = depth.shape
    if colors_bgr is not None and colors_bgr.shape != (h, w, 3):
        raise ValueError(f"colors_bgr must be (H, W, 3) = ({h}, {w}, 3) like depth, got {colors_bgr.shape}")
    if data is None:
        data = array.array("B", bytes(h * w * POINT_STEP))
    elif len(data) != h * w * POINT_STEP:
        raise ValueError(f"point cloud buffer has {len(data)} bytes, a {w} x {h} cloud needs {h * w * POINT_STEP}")
    depth = np.asarray(depth, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        z = depth + depth * np.float32(0.0)  # finite: Z; NaN or +-inf: NaN (inf * 0 = NaN)
    x = z * ((np.arange(w, dtype=np.float32) - np.float32(camera.cx)) / np.float32(camera.fx))[None, :]
    y = z * ((np.arange(h, dtype=np.float32) - np.float32(camera.cy)) / np.float32(camera.fy))[:, None]
    if colors_bgr is not None:
        rgb = pack_rgb_float(colors_bgr)
        np.copyto(rgb, np.float32(np.nan), where=np.isnan(z))
    else:
        rgb = np.zeros((h, w), dtype=np.float32)
    # One interleaving pass by OpenCV, written into the message's byte array.
    cv2.merge([x, y, z, rgb], dst=np.frombuffer(data, dtype=np.float32).reshape(h, w, 4))
    return _point_cloud_message(header, h, w, colors_bgr is not None, data)


def point_cloud2_to_array(msg: PointCloud2) -> np.ndarray:
    """Decode a PointCloud2 into a structured array of shape (height, width) with one entry per field.

    Field values keep their PointField datatype (``rgb`` FLOAT32 -> float32; view it as uint32 for the packed
    colour); ``count > 1`` fields become sub-arrays. Honours ``point_step``, ``row_step`` and ``is_bigendian``.

    Raises:
        ValueError: for an unknown datatype or data shorter than ``row_step * height``.
    """
    order = ">" if msg.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for field in msg.fields:
        if field.datatype not in _POINT_FIELD_DTYPES:
            raise ValueError(f"point cloud field {field.name!r} has unknown datatype {field.datatype}")
        dtype = np.dtype(_POINT_FIELD_DTYPES[field.datatype]).newbyteorder(order)
        names.append(field.name)
        formats.append((dtype, (field.count,)) if field.count > 1 else dtype)
        offsets.append(field.offset)
    point_dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": msg.point_step})
    if len(msg.data) < msg.row_step * msg.height:
        raise ValueError(f"point cloud field 'data' has {len(msg.data)} bytes, fewer than 'row_step' x 'height' = "
                         f"{msg.row_step * msg.height}")
    raw = np.frombuffer(msg.data, dtype=np.uint8, count=msg.row_step * msg.height).reshape(msg.height,
                                                                                             msg.row_step)
    rows = np.ascontiguousarray(raw[:, :msg.point_step * msg.width])
    return rows.view(point_dtype).reshape(msg.height, msg.width).copy()
