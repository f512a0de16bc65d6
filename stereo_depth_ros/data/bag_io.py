"""Generic rosbag2 I/O without ROS: the typestore, message builders, raw reading and recording, header stamps.

Everything here uses the `rosbags <https://gitlab.com/ternaris/rosbags>`_ library (pure Python) and its typestore
of ROS 2 Kilted message definitions (``sensor_msgs``, ``stereo_msgs`` are the same in Jazzy and Humble), so it
runs on a machine without a ROS installation and never imports ``rclpy``. Bags are written in the rosbag2 MCAP
storage format (metadata version 9), which ``ros2 bag play``, ``rosbags`` and Foxglove read.

Nothing here knows about stereo: the stereo bag schema and ``make-bag`` are in
:mod:`stereo_depth_ros.data.stereo_bag`.
"""

from __future__ import annotations

import functools
import shutil
import struct
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

IMAGE_TYPE = "sensor_msgs/msg/Image"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
DISPARITY_TYPE = "stereo_msgs/msg/DisparityImage"
POINT_CLOUD_TYPE = "sensor_msgs/msg/PointCloud2"


@functools.lru_cache(maxsize=1)
def typestore():
    """The rosbags typestore with the ROS 2 Kilted message definitions (the distribution of the installed wheels;
    the sensor_msgs/stereo_msgs definitions and their RIHS01 hashes are the same in Jazzy)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


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


def header_message(stamp_ns: int, frame_id: str):
    """A rosbags ``std_msgs/msg/Header`` with this stamp (nanoseconds) and frame id."""
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
        header=header_message(stamp_ns, frame_id), height=height, width=width, encoding=encoding,
        is_bigendian=0, step=image.strides[0], data=image.reshape(-1).view(np.uint8))


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


def serialize(msg, msgtype: str) -> bytes:
    """Serialize a rosbags message to CDR bytes (little-endian)."""
    return bytes(typestore().serialize_cdr(msg, msgtype))


# ----------------------------------------------------------------------------------------------- reading


@dataclass
class BagMessage:
    """One message of a bag: topic, type, log time (ns) and the serialized CDR bytes."""

    topic: str
    msgtype: str
    log_time_ns: int
    raw: bytes


def open_reader(path: Path):
    """An opened ``rosbags.rosbag2.Reader`` (close it when done).

    Raises:
        FileNotFoundError: if the bag does not exist.
        ValueError: if it is not a rosbag2 folder, or is truncated or damaged.
    """
    from rosbags.rosbag2 import Reader

    path = Path(path)
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
    reader = open_reader(path)
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


def declared_topics(path: str | Path) -> dict[str, tuple[str, int]]:
    """Topics a bag's metadata declares: topic -> (message type, message count).

    Raises:
        FileNotFoundError, ValueError: as :func:`open_reader`.
    """
    reader = open_reader(Path(path))
    try:
        return {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}
    finally:
        reader.close()


@dataclass
class BagContents:
    """What :func:`inspect_bag` found: every topic with its type and count, and header stamps of some topics.

    Attributes:
        path: the bag folder.
        topics: topic -> (message type, messages read).
        stamps: topic -> header stamps (ns) in log-time order, for the topics asked for.
    """

    path: Path
    topics: dict[str, tuple[str, int]]
    stamps: dict[str, list[int]] = field(default_factory=dict)


def inspect_bag(path: str | Path, stamp_topics: Iterable[str] = ()) -> BagContents:
    """Read a whole bag once: count the messages of every topic and check them against the metadata (so a
    truncated or damaged bag is detected before anything else runs), and collect header stamps.

    Args:
        path: bag folder.
        stamp_topics: topics whose header stamps to collect (messages that start with a ``std_msgs/Header``).

    Raises:
        FileNotFoundError: if the bag does not exist.
        ValueError: if it cannot be read or is truncated (a topic has fewer messages than its metadata declares).
    """
    path = Path(path)
    declared = declared_topics(path)
    wanted = set(stamp_topics)
    counts: Counter = Counter()
    stamps: dict[str, list[int]] = {t: [] for t in wanted}
    for message in iter_bag_messages(path):
        counts[message.topic] += 1
        if message.topic in wanted:
            stamps[message.topic].append(header_stamp_from_cdr(message.raw))
    for topic, (_, declared_count) in declared.items():
        if counts[topic] < declared_count:
            raise ValueError(f"bag {path} is truncated: topic {topic} declares {declared_count} messages but only "
                             f"{counts[topic]} could be read")
    return BagContents(path=path, topics={t: (m, counts[t]) for t, (m, _) in declared.items()}, stamps=stamps)


def read_topic_by_stamp(path: str | Path, topic: str) -> dict[int, bytes]:
    """Serialized messages of one topic keyed by their header stamp in nanoseconds (later duplicates win).

    Raises:
        FileNotFoundError, ValueError: as :func:`iter_bag_messages`.
    """
    return {header_stamp_from_cdr(m.raw): m.raw for m in iter_bag_messages(path, [topic])}


# ----------------------------------------------------------------------------------------------- writing


def prepare_output(path: Path, overwrite: bool) -> None:
    """Make room for a new bag folder at ``path``: refuse an existing one unless ``overwrite``; never remove a
    folder that is not a rosbag2 bag.

    Raises:
        ValueError: if the output exists (without ``overwrite``) or is not a bag folder.
    """
    path = Path(path)
    if path.exists():
        looks_like_bag = path.is_dir() and (any(path.glob("*.mcap")) or any(path.glob("*.db3"))
                                            or (path / "metadata.yaml").is_file())
        if not overwrite:
            raise ValueError(f"output bag {path} already exists; remove it, choose another path or pass overwrite")
        if not looks_like_bag:
            raise ValueError(f"refusing to overwrite {path}: it is not a rosbag2 folder")
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)


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
        prepare_output(self.path, overwrite)
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
