"""Stereo super-resolution node (``super_resolution_node``), a :class:`~stereo_depth_ros.ros.node_base.PerceptionNode`.

Subscribes a rectified pair with camera_info (``left/image_rect``, ``right/image_rect``, ``left/camera_info``,
``right/camera_info``, the stereo node's inputs) and publishes the super-resolved pair
(``super_resolved/left/image_rect``, ``super_resolved/right/image_rect``, bgr8) with camera_info scaled consistently
(``super_resolved/left/camera_info``, ``super_resolved/right/camera_info``: width, height, K, P (so the projection's
``Tx = P[3] = -fx B`` too) and the ROI multiplied by the scale; D, R, binning unchanged; the convention of
image_proc's resize node), so that the stereo node runs unchanged on its outputs (the bringup's ``super_resolution``
argument chains them). Disparities of the SR pair are ``scale`` times those of the input, and the depth from
``fx B / d`` is unchanged.

Lazy and newest-first like every node on the base: no input subscription and no inference while no output has a
subscriber; bad input is reported as the base handles it (problem kinds below), never a crash.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

from sensor_msgs.msg import CameraInfo, Image

from stereo_depth_ros.device import DEVICES
from stereo_depth_ros.ros import conversions
from stereo_depth_ros.ros.bringup_spec import SR_OUTPUT_PREFIX
from stereo_depth_ros.ros.node_base import PerceptionNode, SkipSet, run_node
from stereo_depth_ros.ros.parameters import ParameterSpec

SR_MODELS = ("stereo-sr-x2", "stereo-sr-x4", "single-image-sr-x2", "single-image-sr-x4")
#: Where the outputs go (relative); the bringup chain remaps the stereo node's inputs there.
OUTPUT_PREFIX = SR_OUTPUT_PREFIX

SR_PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec("model", "stereo-sr-x2", "Super-resolution model: stereo-sr-x2, stereo-sr-x4 (parallax attention) "
                  "or the single-image baselines single-image-sr-x2, single-image-sr-x4.", read_only=True,
                  choices=SR_MODELS),
    ParameterSpec("weights", "", "Weights (safetensors); empty = the packaged ones.", read_only=True),
    ParameterSpec("device", "auto", "Device for the network: auto, cpu or cuda.", read_only=True, choices=DEVICES),
    ParameterSpec("backend", "auto", "Inference backend: auto (onnxruntime on the CPU), torch or onnx.",
                  read_only=True, choices=("auto", "torch", "onnx")),
)


def scale_camera_info(info: CameraInfo, scale: int) -> CameraInfo:
    """A copy of ``info`` for images ``scale`` times larger: width, height, K (fx, cx, fy, cy), P (fx, cx, Tx = -fx B,
    fy, cy) and the ROI multiplied by ``scale``; distortion, rectification and binning unchanged.

    Raises:
        ValueError: for a scale that is not a positive integer.
    """
    if isinstance(scale, bool) or not isinstance(scale, int) or scale <= 0:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    scaled = copy.deepcopy(info)
    scaled.width, scaled.height = info.width * scale, info.height * scale
    k = [float(v) for v in info.k]
    for index in (0, 2, 4, 5):
        k[index] *= scale
    scaled.k = k
    p = [float(v) for v in info.p]
    for index in (0, 2, 3, 5, 6):
        p[index] *= scale
    scaled.p = p
    roi = scaled.roi
    roi.x_offset, roi.y_offset = info.roi.x_offset * scale, info.roi.y_offset * scale
    roi.width, roi.height = info.roi.width * scale, info.roi.height * scale
    return scaled


class SuperResolutionNode(PerceptionNode):
    """Stereo super-resolution node: a rectified pair with camera_info in; the SR pair with scaled camera_info out.

    Problem kinds: "encoding", "image_size", "camera_info_size", "empty_image", "image_layout", "estimator",
    "prepare", "internal". Timing steps: "convert_in", "inference", "build", "total".

    Raises:
        stereo_depth_ros.models.weights.WeightsError: at start-up, for a missing or wrong weights file.
        ValueError: at start-up, for invalid parameters.
    """

    DEFAULT_NODE_NAME = "super_resolution_node"
    INPUT_TOPICS = {"left/image_rect": Image, "right/image_rect": Image, "left/camera_info": CameraInfo,
                    "right/camera_info": CameraInfo}
    OUTPUT_TOPICS = {OUTPUT_PREFIX + "left/image_rect": Image, OUTPUT_PREFIX + "right/image_rect": Image,
                     OUTPUT_PREFIX + "left/camera_info": CameraInfo, OUTPUT_PREFIX + "right/camera_info": CameraInfo}
    PARAMETERS = SR_PARAMETERS

    def setup(self) -> None:
        """Build the SR estimator through the model registry."""
        from stereo_depth_ros.models.registry import create_estimator

        settings = self.settings
        self.estimator = create_estimator(settings["model"], weights=settings["weights"] or None,
                                          device=settings["device"], backend=settings["backend"])
        self.scale = int(self.estimator.scale)
        self.get_logger().info(f"super-resolution {self.estimator.name} x{self.scale} (backend "
                               f"{self.estimator.backend}) ready")

    def prepare(self, height: int, width: int) -> None:
        """Build the network's backend for this input size (ONNX export or cache load)."""
        self.estimator.prepare(height, width)

    def diagnostic_values(self) -> dict[str, str]:
        return {"model": self.estimator.name, "scale": str(self.scale), "backend": self.estimator.backend}

    def process(self, inputs: list[Any]) -> list[tuple[str, Any]]:
        """Super-resolve one synchronised set and build the wanted outputs (worker thread).

        Raises:
            InputError: for messages the node cannot use. SkipSet: kind "estimator" when the model fails.
        """
        left_msg, right_msg, left_info, right_info = inputs
        topics = list(self.INPUT_TOPICS)
        with self.timed("convert_in"):
            left, right = conversions.stereo_pair_to_bgr8(left_msg, right_msg, left_info, right_info,
                                                          (topics[0], topics[1]))
        with self.timed("inference"):
            try:
                sr_left, sr_right = self.estimator.super_resolve(left, right)
            except Exception as error:
                raise SkipSet("estimator", f"super-resolution {self.estimator.name} failed on a {left.shape[1]} x "
                                           f"{left.shape[0]} pair: {type(error).__name__}: {error}") from error
        outgoing: list[tuple[str, Any]] = []
        with self.timed("build"):
            for side, image, image_msg, info in (("left", sr_left, left_msg, left_info),
                                                 ("right", sr_right, right_msg, right_info)):
                image_topic, info_topic = f"{OUTPUT_PREFIX}{side}/image_rect", f"{OUTPUT_PREFIX}{side}/camera_info"
                if self.wanted(image_topic):
                    outgoing.append((image_topic, conversions.numpy_to_image(image, "bgr8", image_msg.header)))
                if self.wanted(info_topic):
                    scaled = scale_camera_info(info, self.scale)
                    scaled.header = image_msg.header
                    if info.width == 0 and info.height == 0:  # size not set: say the SR image's size
                        scaled.width, scaled.height = image.shape[1], image.shape[0]
                    outgoing.append((info_topic, scaled))
        return outgoing


def main(args: list[str] | None = None) -> int:
    """Console entry point ``super_resolution_node``."""
    return run_node(SuperResolutionNode, SuperResolutionNode.DEFAULT_NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())
