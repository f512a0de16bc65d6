"""Instrument-segmentation sets (images with masks) on :class:`~stereo_depth_ros.data.folder_dataset.ImageFolderDataset`.

Every set's mask coding is mapped explicitly (the maps below) to three label maps per image, all (H, W) uint8 with
:data:`IGNORE` = 255 where the set has no label:

- ``binary``: 0 background, 1 instrument;
- ``parts``: EndoVis 2017 part ids 0 background, 1 shaft, 2 wrist, 3 claspers, plus :data:`PART_MANIPULATOR` = 4
  for EndoVis 2015's "manipulator" (jaw and wrist in one class: the pixel is wrist *or* claspers);
- ``type``: 0 background and the instrument types 1..7 of :data:`stereo_depth_ros.models.segmentation.TYPE_NAMES`
  (EndoVis 2018 coding).

Layouts (:func:`detect_layout`; the README of ../shared/data and each set's SOURCE.txt give the codings):

=====================  ==========================================================================================
``endoscapes``         ``REAL/<video>_<frame>.jpg`` + ``GROUND_TH/<same>.png`` + ``matches.json`` (official split);
                       tool = 6 (7 in frame ``153_32700``, whose ids are shifted), 255 = ignore; parts, type: none
``endovis2015``        ``images/`` + ``masks/`` (0/255) + ``masks_parts/`` (0 bg, 70 jaw/wrist, 160 shaft)
``endovis2018-types``  ``images/`` + ``masks/`` (0/255) + ``masks_type/`` (0 bg, 1..7 types)
``endovis2017-parts``  ``images/`` + ``ground_truth/`` merged part masks (0, 10 shaft, 20 wrist, 30 claspers) in the
                       1920x1080 raw layout; the camera image is the 1280x1024 region at x = 320, y = 28
``endovis2017``        the challenge's own layout: ``instrument_dataset_<k>/left_frames/frameNNN.png`` and
                       ``instrument_dataset_<k>/ground_truth/<Instrument_Type>_labels/frameNNN.png`` (one part mask
                       per instrument, 0/10/20/30, merged here; the folder name gives the type), same crop
``endovis2017-binary`` ``frameNNN.jpg`` + ``gtb_frameNNN.png`` (0/255), 1280x1024
``dvrk``               ``raw/<name>_img.png`` + ``label/<name>_label.png`` colour labels: green (0, 255, 0) =
                       instrument (PSM), yellow (255, 255, 0) = needle (ignored: not an instrument, not background),
                       black = background
=====================  ==========================================================================================

Each sample also has a *group* (video, operation, scene or sequence: :meth:`SegmentationDataset.group_of`) so that
validation splits are made by group, never by frame.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np

from stereo_depth_ros.data.folder_dataset import ImageFolderDataset, Sample, path_in_list
from stereo_depth_ros.images import list_images, read_image, read_image_bgr

IGNORE = 255
PART_MANIPULATOR = 4  # EndoVis 2015 "manipulator" (jaw + wrist): wrist or claspers in the EndoVis 2017 coding
ENDOSCAPES_TOOL = 6
ENDOSCAPES_SHIFTED_FRAMES = {"153_32700": 7}  # frames whose ids are shifted by one (tool = 7)
ENDOVIS2015_PARTS = {0: 0, 70: PART_MANIPULATOR, 160: 1}  # mask value -> part id (0 bg, 1 shaft, 4 manipulator)
ENDOVIS2017_PARTS = {0: 0, 10: 1, 20: 2, 30: 3}  # mask value -> part id (0 bg, 1 shaft, 2 wrist, 3 claspers)
ENDOVIS2017_CROP = (28, 320, 1024, 1280)  # (y, x, height, width) of the camera image in the 1920x1080 raw frame
ENDOVIS2017_TYPES = {"bipolar_forceps": 1, "prograsp_forceps": 2, "large_needle_driver": 3,
                     "monopolar_curved_scissors": 4, "ultrasound_probe": 5, "suction_instrument": 6,
                     "clip_applier": 7}  # <Left|Right|...>_<Type>_labels folder -> type id (EndoVis 2018 ids)
DVRK_COLOURS_BGR = {(0, 0, 0): 0, (0, 255, 0): 1, (0, 255, 255): IGNORE}  # bg, instrument (PSM), needle (ignored)
LAYOUTS = ("endoscapes", "endovis2015", "endovis2018-types", "endovis2017-parts", "endovis2017",
           "endovis2017-binary", "dvrk")
LABELS = ("binary", "parts", "type")


def detect_layout(root: str | Path) -> str:
    """The layout of a set's folder (see the module docstring).

    Raises:
        FileNotFoundError: if ``root`` is missing or matches no layout (the message lists the layouts expected).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"segmentation set folder {root} does not exist")
    if (root / "REAL").is_dir() and (root / "GROUND_TH").is_dir():
        return "endoscapes"
    if (root / "images").is_dir() and (root / "masks_type").is_dir():
        return "endovis2018-types"
    if (root / "images").is_dir() and (root / "masks_parts").is_dir():
        return "endovis2015"
    if (root / "images").is_dir() and (root / "ground_truth").is_dir():
        return "endovis2017-parts"
    if any(root.glob("instrument_dataset_*/left_frames")) or (root / "left_frames").is_dir():
        return "endovis2017"
    if any(root.glob("gtb_*.png")):
        return "endovis2017-binary"
    if (root / "raw").is_dir() and (root / "label").is_dir():
        return "dvrk"
    raise FileNotFoundError(f"{root} holds no segmentation layout known here: REAL/+GROUND_TH/ (Endoscapes), "
                            f"images/+masks_parts/ (EndoVis 2015), images/+masks_type/ (EndoVis 2018), "
                            f"images/+ground_truth/ (EndoVis 2017 parts), instrument_dataset_*/left_frames/ "
                            f"(EndoVis 2017), gtb_*.png (EndoVis 2017 binary), raw/+label/ (dVRK)")


def map_values(mask: np.ndarray, mapping: dict[int, int], what: str, tolerance: int = 0) -> np.ndarray:
    """Map the values of an 8-bit mask with ``mapping`` (value -> label id); every other value is an error, unless
    ``tolerance`` > 0, which snaps values within ``tolerance`` of a key to it (JPEG-like noise).

    Raises:
        ValueError: for a value not in ``mapping`` (naming ``what`` and the values).

    Example:
        >>> map_values(np.array([[0, 70], [160, 0]], np.uint8), ENDOVIS2015_PARTS, "parts").tolist()
        [[0, 4], [1, 0]]
    """
    out = np.full(mask.shape, IGNORE, np.uint8)
    assigned = np.zeros(mask.shape, bool)
    for value, label in mapping.items():
        hit = np.abs(mask.astype(np.int16) - value) <= tolerance
        out[hit & ~assigned] = label
        assigned |= hit
    if not assigned.all():
        unknown = sorted(set(np.unique(mask[~assigned]).tolist()))[:8]
        raise ValueError(f"{what}: values {unknown} are not in the coding {sorted(mapping)}")
    return out


def binary_from_255(mask: np.ndarray) -> np.ndarray:
    """0/255 mask -> 0/1 uint8 (threshold 128, so that compression noise does not matter)."""
    return (mask >= 128).astype(np.uint8)


def endovis2017_crop(array: np.ndarray) -> np.ndarray:
    """The 1280x1024 camera image of a 1920x1080 EndoVis 2017 raw frame (arrays of other sizes: unchanged)."""
    y, x, height, width = ENDOVIS2017_CROP
    if array.shape[0] == 1080 and array.shape[1] == 1920:
        return array[y:y + height, x:x + width]
    return array


def endoscapes_split(root: Path) -> dict[str, str]:
    """``{frame name: "train" | "val" | "test"}`` from Endoscapes' ``matches.json`` (its ``folders`` entry).

    Raises:
        FileNotFoundError, ValueError: if the file is missing or names no split for a frame.
    """
    path = root / "matches.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} (the official Endoscapes split) does not exist")
    splits = {}
    for name, entry in json.loads(path.read_text()).items():
        found = [folder for folder in entry.get("folders", []) if folder in ("train", "val", "test")]
        if len(found) != 1:
            raise ValueError(f"{path}: frame {name} has no single split in {entry.get('folders')}")
        splits[Path(name).stem] = found[0]
    return splits


class SegmentationDataset(ImageFolderDataset):
    """Images with instrument labels (binary, parts, type) from any layout of the module docstring.

    Items: ``image`` (3, h, w) float32 RGB in [0, 1]; ``binary``, ``parts``, ``type`` (h, w) int64 label maps with
    255 = no label (see the module docstring); ``name``. With ``crop`` the image is first rescaled by a random
    factor so that its height is ``working_height`` times ``scale_range`` (the network's input scale at inference),
    then cropped (padded with ignored labels where smaller); without ``crop`` it is rescaled to ``working_height``
    when that is given, else kept.

    Args:
        roots: set folders (any layouts, mixed).
        split: for Endoscapes only, ``"train"``, ``"val"`` or ``"test"`` (the official split); None = all frames.
            Other layouts ignore it.
        groups_include, groups_exclude: keep only / leave out samples whose :meth:`group_of` is listed
            (e.g. ``["endovis2015/test4"]``).
        working_height: the height in pixels images are rescaled to (None: native size).
        scale_range: random factor range on ``working_height`` for training crops.
        paste_backgrounds: folders of tissue images without instruments for copy-paste augmentation: with
            probability ``paste_probability`` the item's labelled instrument pixels are pasted onto a random tissue
            image (labels follow the instruments; the rest becomes background).
        paste_probability: probability of a copy-paste item (with ``augment`` and backgrounds).
        paste_exclude: path suffixes of background images never used (held-out frames of other tasks).
        crop, augment, samples_per_epoch, seed, exclude: see :class:`ImageFolderDataset`.

    Raises:
        FileNotFoundError: for a missing folder, no known layout, or no sample left after the selection.
        ValueError: for a bad split name, crop or scale range; (when read) a mask value outside its set's coding.
    """

    FIELDS = ("image", "label")

    def __init__(self, roots, split: str | None = None, groups_include: list[str] | None = None,
                 groups_exclude: list[str] | None = None, working_height: int | None = None,
                 scale_range: tuple[float, float] = (0.8, 1.25), paste_backgrounds: list[str | Path] | None = None,
                 paste_probability: float = 0.3, paste_exclude: list[str] | None = None, **options) -> None:
        if split not in (None, "train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val', 'test' or None, got {split!r}")
        if not (0 < scale_range[0] <= scale_range[1]):
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range}")
        if working_height is not None and working_height <= 0:
            raise ValueError(f"working_height must be positive pixels, got {working_height}")
        self.split = split
        self.groups_include = set(groups_include or [])
        self.groups_exclude = set(groups_exclude or [])
        self.working_height = working_height
        self.scale_range = tuple(scale_range)
        self._layouts: dict[Path, str] = {}
        super().__init__(roots, **options)
        self.paste_probability = float(paste_probability)
        self.backgrounds = []
        for folder in paste_backgrounds or []:
            folder = Path(folder)
            if not folder.is_dir():
                raise FileNotFoundError(f"copy-paste background folder {folder} does not exist")
            self.backgrounds += [path for path in sorted(folder.rglob("*.png")) if "right" not in path.parts
                                 and not path_in_list(path, paste_exclude or [])]
        self._background_cache: dict[int, np.ndarray] = {}

    def sample_description(self) -> str:
        return "images with instrument masks"

    # Listing.

    def find_samples(self, root: Path) -> list[tuple[Path, Path]]:
        layout = detect_layout(root)
        pairs = []
        if layout == "endoscapes":
            splits = endoscapes_split(root) if self.split else {}
            for image in list_images(root / "REAL"):
                if self.split and splits.get(image.stem) != self.split:
                    continue
                pairs.append((image, root / "GROUND_TH" / f"{image.stem}.png"))
        elif layout in ("endovis2015", "endovis2018-types", "endovis2017-parts"):
            label_folder = {"endovis2015": "masks_parts", "endovis2018-types": "masks_type",
                            "endovis2017-parts": "ground_truth"}[layout]
            for image in list_images(root / "images"):
                pairs.append((image, root / label_folder / f"{image.stem}.png"))
        elif layout == "endovis2017":
            sequences = sorted(root.glob("instrument_dataset_*")) or [root]
            for sequence in sequences:
                for image in list_images(sequence / "left_frames"):
                    pairs.append((image, sequence / "ground_truth"))
        elif layout == "endovis2017-binary":
            for label in sorted(root.glob("gtb_*.png")):
                stem = label.stem[len("gtb_"):]
                images = [path for path in root.glob(stem + ".*") if path.suffix.lower() in (".png", ".jpg")]
                if not images:
                    raise FileNotFoundError(f"{root}: mask {label.name} has no image {stem}.png or .jpg")
                pairs.append((images[0], label))
        else:  # dvrk
            for image in list_images(root / "raw"):
                pairs.append((image, root / "label" / image.name.replace("_img", "_label")))
        for image, label in pairs:
            self._layouts[image] = layout
            if layout != "endovis2017" and not label.is_file():
                raise FileNotFoundError(f"{root}: image {image.name} has no mask {label}")
        return [pair for pair in pairs if self._selected(pair[0])]

    def _selected(self, image: Path) -> bool:
        group = self.group_of(image)
        if self.groups_include and group not in self.groups_include:
            return False
        return group not in self.groups_exclude

    def group_of(self, image: Path) -> str:
        """The sample's group: ``<set folder name>/<video | OP | scene | sequence>`` (e.g. ``endoscapes_seg50/153``,
        ``endovis2015_robotic/test4``, ``endovis2018_types/seq_14``), the unit of validation splits."""
        layout = self._layouts.get(image) or detect_layout(self._root_of(image))
        root = self._root_of(image)
        stem = image.stem
        if layout == "endoscapes":
            key = stem.split("_")[0]
        elif layout == "endovis2015":
            key = re.split(r"_(img|f)", stem)[0]
        elif layout == "endovis2018-types":
            key = stem.rsplit("_frame", 1)[0]
        elif layout == "endovis2017":
            key = image.parent.parent.name
        else:
            key = "all"
        return f"{root.name}/{key}"

    def _root_of(self, image: Path) -> Path:
        for root in self.roots:
            if root in image.parents:
                return root
        return image.parent

    # Reading.

    def layout_of(self, index: int) -> str:
        """The layout of sample ``index``."""
        return self._layouts[self.samples[index][0]]

    def read_sample(self, index: int) -> Sample:
        """``image`` (H, W, 3) uint8 BGR and ``binary``, ``parts``, ``type`` (H, W) uint8 (255 = no label).

        Raises:
            FileNotFoundError, ValueError: for a missing or undecodable file, or a mask value outside the coding.
        """
        image_path, label_path = self.samples[index]
        layout = self.layout_of(index)
        return read_labelled_image(image_path, label_path, layout)

    def crop_sample(self, sample: Sample, rng: np.random.Generator) -> Sample:
        height = self.working_height or sample["image"].shape[0]
        factor = height * rng.uniform(*self.scale_range) / sample["image"].shape[0]
        sample = rescale_sample(sample, factor)
        if self.augment and self.backgrounds and rng.random() < self.paste_probability:
            sample = self._paste(sample, rng)
        crop_height, crop_width = self.crop
        sample = pad_sample(sample, crop_height, crop_width)
        return super().crop_sample(sample, rng)

    def _paste(self, sample: Sample, rng: np.random.Generator) -> Sample:
        index = int(rng.integers(len(self.backgrounds)))
        if index not in self._background_cache:
            self._background_cache[index] = read_image_bgr(self.backgrounds[index])
        background = self._background_cache[index]
        height, width = sample["image"].shape[:2]
        background = cv2.resize(background, (width, height), interpolation=cv2.INTER_LINEAR)
        instrument = sample["binary"] == 1
        pasted = dict(sample)
        pasted["image"] = np.where(instrument[..., None], sample["image"], background)
        for field in LABELS:
            labels = sample[field].copy()
            labels[~instrument & (labels != IGNORE)] = 0
            labels[~instrument & (sample["binary"] == IGNORE)] = 0
            pasted[field] = labels
        return pasted

    def to_float(self, sample: Sample) -> Sample:
        return {"image": sample["image"][..., ::-1].astype(np.float32) / 255.0,
                **{field: sample[field] for field in LABELS}}

    def augment_sample(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """Horizontal and vertical flips (p = 0.5 each) and colour jitter: brightness x [0.7, 1.3], contrast
        x [0.7, 1.3], saturation x [0.6, 1.4], gamma [0.8, 1.25]."""
        image = sample["image"]
        flips = [axis for axis, chance in ((1, 0.5), (0, 0.5)) if rng.random() < chance]
        for axis in flips:
            image = np.flip(image, axis)
            sample = {field: (np.flip(value, axis) if field != "image" else value) for field, value in sample.items()}
        grey = image.mean(axis=2, keepdims=True)
        image = grey + (image - grey) * rng.uniform(0.6, 1.4)
        image = (image - image.mean()) * rng.uniform(0.7, 1.3) + image.mean()
        image = np.clip(image * rng.uniform(0.7, 1.3), 0.0, 1.0) ** rng.uniform(0.8, 1.25)
        return {**sample, "image": np.ascontiguousarray(image, dtype=np.float32)}

    def to_item(self, sample: Sample, index: int) -> dict:
        import torch

        item = {"image": torch.from_numpy(np.ascontiguousarray(sample["image"].transpose(2, 0, 1)))}
        for field in LABELS:
            item[field] = torch.from_numpy(np.ascontiguousarray(sample[field]).astype(np.int64))
        item["name"] = str(self.samples[index][0])
        return item

    def __getitem__(self, item: int) -> dict:
        if self.crop is None and self.working_height:
            if not 0 <= item < len(self):
                raise IndexError(f"item {item} is outside the dataset (0..{len(self) - 1})")
            index = item % len(self.samples)
            sample = self.load_sample(index)
            sample = rescale_sample(sample, self.working_height / sample["image"].shape[0])
            return self.to_item(self.to_float(sample), index)
        return super().__getitem__(item)


def read_labelled_image(image_path: Path, label_path: Path, layout: str) -> Sample:
    """One image and its ``binary``, ``parts`` and ``type`` maps (see the module docstring) for a layout.

    Returns:
        ``{"image": (H, W, 3) uint8 BGR, "binary"|"parts"|"type": (H, W) uint8, 255 = no label}``.

    Raises:
        FileNotFoundError, ValueError: for a missing or undecodable file, an unknown layout, a mask whose size
            differs from the image's, or a mask value outside the coding.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    image = read_image_bgr(image_path)
    what = f"mask {label_path}"
    parts = kinds = None
    if layout == "endoscapes":
        mask = read_image(label_path, cv2.IMREAD_GRAYSCALE, "mask")
        tool = ENDOSCAPES_SHIFTED_FRAMES.get(Path(image_path).stem, ENDOSCAPES_TOOL)
        binary = (mask == tool).astype(np.uint8)
        binary[mask == IGNORE] = IGNORE
    elif layout == "endovis2015":
        mask = read_image(label_path, cv2.IMREAD_GRAYSCALE, "mask")
        parts = map_values(mask, ENDOVIS2015_PARTS, what, tolerance=20)
        binary = (parts > 0).astype(np.uint8)
        if "robotic" in Path(image_path).parent.parent.name:
            kinds = binary * 3  # EndoVis 2015 robotic: da Vinci Large Needle Drivers only (SOURCE.txt) = type 3
    elif layout == "endovis2018-types":
        kinds = read_image(label_path, cv2.IMREAD_GRAYSCALE, "mask")
        if kinds.max() > 7:
            raise ValueError(f"{what}: type ids must be 0..7, found {int(kinds.max())}")
        binary = (kinds > 0).astype(np.uint8)
    elif layout in ("endovis2017-parts", "endovis2017"):
        if layout == "endovis2017-parts":
            mask = read_image(label_path, cv2.IMREAD_GRAYSCALE, "mask")
        else:
            mask, kinds = merge_endovis2017_instruments(Path(label_path), Path(image_path).name, image.shape[:2])
            kinds = endovis2017_crop(kinds)
        parts = map_values(endovis2017_crop(mask), ENDOVIS2017_PARTS, what)
        image = endovis2017_crop(image)
        binary = (parts > 0).astype(np.uint8)
    elif layout == "endovis2017-binary":
        binary = binary_from_255(read_image(label_path, cv2.IMREAD_GRAYSCALE, "mask"))
    else:  # dvrk
        colours = read_image(label_path, cv2.IMREAD_COLOR, "mask")
        binary = np.full(colours.shape[:2], 0, np.uint8)
        known = np.zeros(colours.shape[:2], bool)
        for colour, label in DVRK_COLOURS_BGR.items():
            hit = np.all(colours == np.array(colour, np.uint8), axis=2)
            binary[hit] = label
            known |= hit
        if not known.all():
            raise ValueError(f"{what}: colours outside the dVRK coding {sorted(DVRK_COLOURS_BGR)} (BGR)")
    if binary.shape != image.shape[:2]:
        raise ValueError(f"{what} is {binary.shape[1]}x{binary.shape[0]}, its image {image_path} is "
                         f"{image.shape[1]}x{image.shape[0]}")
    ignore = np.full(binary.shape, IGNORE, np.uint8)
    return {"image": image, "binary": binary, "parts": ignore if parts is None else parts,
            "type": ignore.copy() if kinds is None else kinds}


def merge_endovis2017_instruments(ground_truth: Path, frame_name: str, shape: tuple[int, int]
                                  ) -> tuple[np.ndarray, np.ndarray]:
    """Merge the per-instrument part masks of one EndoVis 2017 frame (``<ground_truth>/<Side>_<Type>_labels/
    <frame>``, values 0/10/20/30) into one part mask and one type map (ids of :data:`ENDOVIS2017_TYPES`; 255 where a
    folder's type is not one of them, e.g. ``Other_labels``).

    Returns:
        ``(parts_values (H, W) uint8 0/10/20/30, type (H, W) uint8)``.

    Raises:
        FileNotFoundError: if no instrument folder holds the frame.
    """
    parts = np.zeros(shape, np.uint8)
    kinds = np.zeros(shape, np.uint8)
    found = False
    for folder in sorted(ground_truth.glob("*_labels")):
        path = folder / frame_name
        if not path.is_file():
            continue
        found = True
        mask = read_image(path, cv2.IMREAD_GRAYSCALE, "mask")
        name = folder.name[:-len("_labels")].lower()
        type_id = next((value for key, value in ENDOVIS2017_TYPES.items() if name.endswith(key)), IGNORE)
        parts = np.maximum(parts, mask)
        kinds[mask > 0] = type_id
    if not found:
        raise FileNotFoundError(f"no <instrument>_labels/{frame_name} under {ground_truth}")
    return parts, kinds


def rescale_sample(sample: Sample, factor: float) -> Sample:
    """Image resized by ``factor`` (area when shrinking, linear when enlarging), label maps by nearest neighbour."""
    height, width = sample["image"].shape[:2]
    size = (max(int(round(width * factor)), 1), max(int(round(height * factor)), 1))
    if size == (width, height):
        return sample
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    out = {"image": cv2.resize(sample["image"], size, interpolation=interpolation)}
    for field in LABELS:
        out[field] = cv2.resize(sample[field], size, interpolation=cv2.INTER_NEAREST)
    return out


def pad_sample(sample: Sample, height: int, width: int) -> Sample:
    """Pad the sample at the bottom and right to at least ``height`` x ``width`` (image black, labels ignored)."""
    image_height, image_width = sample["image"].shape[:2]
    pad_y, pad_x = max(height - image_height, 0), max(width - image_width, 0)
    if not pad_y and not pad_x:
        return sample
    out = {"image": np.pad(sample["image"], ((0, pad_y), (0, pad_x), (0, 0)))}
    for field in LABELS:
        out[field] = np.pad(sample[field], ((0, pad_y), (0, pad_x)), constant_values=IGNORE)
    return out
