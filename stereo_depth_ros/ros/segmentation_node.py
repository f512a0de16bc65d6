"""Instrument segmentation node (``segmentation_node``) and the mask/point-cloud fusion node (``mask_fusion_node``).

``segmentation_node`` (a :class:`~stereo_depth_ros.ros.node_base.PerceptionNode`): subscribes ``image``
(sensor_msgs/Image, any camera encoding), publishes

- ``mask`` (mono8): class ids per pixel (binary: 0 background, 1 instrument; parts: 0 background, 1 shaft, 2 wrist,
  3 claspers; type: 0 background, 1..7 EndoVis 2018 types);
- ``mask_overlay`` (bgr8): the image with the classes tinted, for RViz;
- ``instrument_probability`` (32FC1 in [0, 1], binary network only): the instrument probability.

The model comes from the registry (``spp-linknet``, ``spp-linknet-parts``, ``spp-linknet-type``) or is the
``colour-threshold`` baseline (no probability).

``mask_fusion_node``: subscribes ``points2`` (the stereo node's organised cloud of the left view) and ``mask`` (the
segmentation of the left image; resized to the cloud by nearest neighbour when sizes differ), synchronised by stamp,
and publishes ``points2_tissue`` and ``points2_instrument`` (organised clouds with the other class's points NaN) and
``instrument_tissue_distance`` (std_msgs/Float32: the nearest tissue-to-instrument distance in metres, NaN when
either is absent), computed by :func:`stereo_depth_ros.mask_fusion.split_points_by_mask`.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import Float32

from stereo_depth_ros.device import DEVICES
from stereo_depth_ros.mask_fusion import split_points_by_mask
from stereo_depth_ros.ros import conversions
from stereo_depth_ros.ros.node_base import PerceptionNode, SkipSet, run_node
from stereo_depth_ros.ros.parameters import ParameterSpec

SEGMENTATION_MODELS = ("spp-linknet", "spp-linknet-parts", "spp-linknet-type", "colour-threshold")
MASK_COLOURS_BGR = np.array([[0, 0, 0], [0, 220, 0], [255, 120, 0], [0, 0, 255], [0, 220, 220], [220, 0, 220],
                             [255, 255, 0], [128, 128, 255]], np.uint8)

SEGMENTATION_PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec("model", "spp-linknet", "Segmentation model: spp-linknet (binary), spp-linknet-parts, "
                  "spp-linknet-type, or the colour-threshold baseline.", read_only=True,
                  choices=SEGMENTATION_MODELS),
    ParameterSpec("weights", "", "SPP-LinkNet weights (safetensors); empty = the packaged ones.", read_only=True),
    ParameterSpec("device", "auto", "Device for the network: auto, cpu or cuda.", read_only=True, choices=DEVICES),
    ParameterSpec("working_height", 256, "Network input height in pixels (the image is scaled to it, aspect "
                  "kept); 256 = the training scale.", read_only=True, integer_range=(64, 2048)),
    ParameterSpec("threshold", 0.5, "Instrument probability at or above which a pixel is instrument (binary).",
                  float_range=(0.01, 0.99)),
    ParameterSpec("overlay_alpha", 0.5, "Opacity of the class colours in 'mask_overlay'.", float_range=(0.0, 1.0)),
)

FUSION_PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec("mask_dilation_px", 0, "Grow the instrument mask by this many pixels before splitting (keeps "
                  "blurred instrument edges out of the tissue cloud).", integer_range=(0, 100)),
    ParameterSpec("distance_stride", 4, "Use every N-th row and column for the distance (speed); the split "
                  "itself is full resolution.", integer_range=(1, 32)),
)


def mask_overlay(image_bgr: np.ndarray, mask: np.ndarray, alpha: float) -> np.ndarray:
    """The image with each class id > 0 tinted (1 green, 2 blue, 3 red, ...) at opacity ``alpha``; uint8 BGR.

    Example:
        >>> image = np.full((1, 2, 3), 100, np.uint8)
        >>> mask_overlay(image, np.array([[0, 1]], np.uint8), 0.5).tolist()
        [[[100, 100, 100], [50, 160, 50]]]
    """
    colours = MASK_COLOURS_BGR[np.asarray(mask, np.int64) % len(MASK_COLOURS_BGR)]
    blended = image_bgr.astype(np.float32) * (1.0 - alpha) + colours.astype(np.float32) * alpha
    return np.where((mask > 0)[..., None], np.rint(blended), image_bgr).astype(np.uint8)


class SegmentationNode(PerceptionNode):
    """Instrument segmentation node: ``image`` in; ``mask``, ``mask_overlay``, ``instrument_probability`` out.

    Problem kinds: "encoding", "empty_image", "image_layout", "estimator", "prepare", "internal".
    Timing steps: "convert_in", "inference", "build", "total".

    Raises:
        stereo_depth_ros.models.weights.WeightsError: at start-up, for a missing or wrong weights file.
        ValueError: at start-up, for invalid parameters.
    """

    DEFAULT_NODE_NAME = "segmentation_node"
    INPUT_TOPICS = {"image": Image}
    OUTPUT_TOPICS = {"mask": Image, "mask_overlay": Image, "instrument_probability": Image}
    PARAMETERS = SEGMENTATION_PARAMETERS

    def setup(self) -> None:
        """Build the segmenter (registry model or the colour-threshold baseline)."""
        settings = self.settings
        if settings["model"] == "colour-threshold":
            from stereo_depth_ros.evaluation.colour_threshold import ColourThresholdSegmenter

            self.segmenter = ColourThresholdSegmenter()
        else:
            from stereo_depth_ros.models.registry import create_estimator

            self.segmenter = create_estimator(settings["model"], weights=settings["weights"] or None,
                                              device=settings["device"], working_height=settings["working_height"],
                                              threshold=settings["threshold"])
        self.get_logger().info(f"segmenter {self.segmenter.name} (backend {self.segmenter.backend}) ready")

    def prepare(self, height: int, width: int) -> None:
        """Build the network's backend for this image size (ONNX export or cache load)."""
        self.segmenter.prepare(height, width)

    def diagnostic_values(self) -> dict[str, str]:
        return {"model": self.segmenter.name, "backend": self.segmenter.backend}

    def process(self, inputs: list[Any]) -> list[tuple[str, Any]]:
        """Segment one image and build the wanted outputs (worker thread).

        Raises:
            InputError: for an image the node cannot use. SkipSet: kind "estimator" when the model fails.
        """
        (image_msg,) = inputs
        with self.timed("convert_in"):
            image = conversions.image_to_bgr8(image_msg, "image")
        if hasattr(self.segmenter, "threshold"):
            self.segmenter.threshold = float(self.settings["threshold"])
        with self.timed("inference"):
            try:
                result = self.segmenter.predict(image)
            except Exception as error:
                raise SkipSet("estimator", f"segmenter {self.segmenter.name} failed on a {image.shape[1]} x "
                                           f"{image.shape[0]} image: {type(error).__name__}: {error}") from error
        header = image_msg.header
        outgoing = []
        with self.timed("build"):
            mask = result["mask"]
            if self.wanted("mask"):
                outgoing.append(("mask", conversions.numpy_to_image(mask, "mono8", header)))
            if self.wanted("mask_overlay"):
                overlay = mask_overlay(image, mask, float(self.settings["overlay_alpha"]))
                outgoing.append(("mask_overlay", conversions.numpy_to_image(overlay, "bgr8", header)))
            probability = result.get("probability")
            if (self.wanted("instrument_probability") and probability is not None
                    and getattr(self.segmenter, "task", "binary") == "binary"):
                outgoing.append(("instrument_probability", conversions.numpy_to_image(
                    np.clip(probability, 0.0, 1.0).astype(np.float32), "32FC1", header)))
        return outgoing


class MaskFusionNode(PerceptionNode):
    """Splits the stereo cloud by the instrument mask: ``points2`` + ``mask`` in; ``points2_tissue``,
    ``points2_instrument`` and ``instrument_tissue_distance`` (metres) out.

    Problem kinds: "encoding", "cloud_layout", "internal". Timing steps: "convert_in", "split", "build", "total".
    """

    DEFAULT_NODE_NAME = "mask_fusion_node"
    INPUT_TOPICS = {"points2": PointCloud2, "mask": Image}
    OUTPUT_TOPICS = {"points2_tissue": PointCloud2, "points2_instrument": PointCloud2,
                     "instrument_tissue_distance": Float32}
    PARAMETERS = FUSION_PARAMETERS

    def process(self, inputs: list[Any]) -> list[tuple[str, Any]]:
        """Split one cloud by its mask (worker thread).

        Raises:
            SkipSet: kind "cloud_layout" for an unorganised cloud or one without x, y, z; InputError for a mask
                that is not a mono8/mono16 image.
        """
        cloud_msg, mask_msg = inputs
        with self.timed("convert_in"):
            if cloud_msg.height <= 1:
                raise SkipSet("cloud_layout", f"points2 must be an organised cloud (field 'height' > 1), got "
                                              f"height {cloud_msg.height}")
            try:
                cloud = conversions.point_cloud2_to_array(cloud_msg)
                points = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=2).astype(np.float32)
            except (ValueError, KeyError) as error:
                raise SkipSet("cloud_layout", f"points2 has no readable x, y, z fields: {error}") from error
            if mask_msg.encoding not in ("mono8", "mono16", "8UC1"):
                raise SkipSet("encoding", f"mask: encoding {mask_msg.encoding!r} (field 'encoding'); expected "
                                          f"mono8 class ids")
            mask = conversions.image_to_numpy(mask_msg, "mask")
        with self.timed("split"):
            split = split_points_by_mask(points, mask, self.settings["mask_dilation_px"],
                                         self.settings["distance_stride"])
        outgoing: list[tuple[str, Any]] = []
        with self.timed("build"):
            colours = None
            if "rgb" in (cloud.dtype.names or ()):
                packed = cloud["rgb"].astype(np.float32).view(np.uint32)
                colours = np.stack([(packed & 0xFF), (packed >> 8) & 0xFF, (packed >> 16) & 0xFF],
                                   axis=2).astype(np.uint8)
            if self.wanted("points2_tissue"):
                outgoing.append(("points2_tissue", conversions.make_point_cloud2(split.tissue, cloud_msg.header,
                                                                                  colours)))
            if self.wanted("points2_instrument"):
                outgoing.append(("points2_instrument", conversions.make_point_cloud2(
                    split.instrument, cloud_msg.header, colours)))
            if self.wanted("instrument_tissue_distance"):
                outgoing.append(("instrument_tissue_distance", Float32(data=float(split.distance_m))))
        return outgoing


def main(args: list[str] | None = None) -> int:
    """Console entry point ``segmentation_node``."""
    return run_node(SegmentationNode, SegmentationNode.DEFAULT_NODE_NAME, args)


def fusion_main(args: list[str] | None = None) -> int:
    """Console entry point ``mask_fusion_node``."""
    return run_node(MaskFusionNode, MaskFusionNode.DEFAULT_NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())
