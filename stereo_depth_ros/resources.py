"""Where the package's own files and the project's shared data are found, from a source tree or an install, and
which shared data no training may read.

The package's data files (``config/``, ``config/splits/``, ``launch/``, ``rviz/``) are installed by ``setup.py``
into ``share/stereo_depth_ros/`` (the ament layout, which colcon and pip both follow); in a source tree or an
editable install they sit beside the ``stereo_depth_ros`` folder. :func:`share_file` looks in both, so a command
finds the held-out pair lists and the bringup finds its parameters file whatever the working directory.

Foundation layer: standard library only (``ament_index_python`` when it imports), no rclpy.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = "stereo_depth_ros"
#: The 14 held-out real BDIS in-vivo pairs (``config/splits/``): never trained on; the stereo validation signal,
#: the photometric comparison with SGBM and the super-resolution test set are measured on them.
HELD_OUT_PAIR_LIST = "bdis_invivo_test.txt"
#: Two real pairs for super-resolution training choices (neither trained on nor test pairs).
SR_VALIDATION_PAIR_LIST = "sr_validation.txt"
#: Folders of the shared data (paths below ``../shared/data``) that are test or evaluation data for every network
#: of the package, so no trainer reads them (:func:`check_training_folders`), with the reason it gives.
EVALUATION_ONLY_FOLDERS = {
    "endoscopic_stereo/scared_keyframe_rectified":
        "evaluation only (../shared/data/README.md: its anatomy overlaps a held-out test frame)",
    "endoscopic_stereo/bdis_synthetic/32": "a GT test set of the stereo and monocular evaluations",
    "endoscopic_stereo/bdis_synthetic/33": "a GT test set of the stereo and monocular evaluations",
    "general_stereo/middlebury2003": "a GT test set of the stereo evaluation",
    "general_stereo/middlebury2014_motorcycle_q": "a GT test set of the stereo evaluation",
    "general_stereo/sceneflow_sample": "a GT test set of the stereo evaluation",
    "nir_rgb/indoor": "the 20 held-out pairs of eval-cross-modal",
    "segmentation/endovis2017_parts": "a cross-domain segmentation test set (../shared/data/README.md)",
    "segmentation/endovis2017_binary": "a cross-domain segmentation test set (../shared/data/README.md)",
    "segmentation/dvrk_phantom": "a cross-domain segmentation test set (../shared/data/README.md)",
}


def package_root() -> Path:
    """The source tree (or editable install) folder that holds ``config/``, ``launch/`` and ``rviz/``."""
    return Path(__file__).resolve().parents[1]


def share_file(folder: str, name: str) -> Path:
    """A data file of this package: from the ament share folder (``share/stereo_depth_ros/<folder>/<name>``)
    when ament_index_python finds the package, else from the source tree, else from ``<sys.prefix>/share``
    (where pip puts the data files).

    Args:
        folder: folder below the package's share folder, e.g. ``"config"`` or ``"config/splits"``.
        name: file name.

    Returns:
        the first existing candidate (an absolute path).

    Raises:
        FileNotFoundError: if no place has the file (naming every place looked in).
    """
    candidates = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:  # pragma: no cover - ament_index_python is part of every ROS 2 installation
        pass
    else:
        try:
            candidates.append(Path(get_package_share_directory(PACKAGE)) / folder / name)
        except (PackageNotFoundError, LookupError, ValueError, OSError):
            pass  # not installed in an ament prefix (or AMENT_PREFIX_PATH unset): use the source tree
    candidates.append(package_root() / folder / name)  # source tree or editable install
    candidates.append(Path(sys.prefix) / "share" / PACKAGE / folder / name)  # pip install without ament
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{folder}/{name} not found in {[str(c) for c in candidates]}")


def split_file(name: str = HELD_OUT_PAIR_LIST) -> Path:
    """A pair list of ``config/splits/`` (default the held-out BDIS in-vivo pairs), found by :func:`share_file`.

    Used as a command-line default, so it never raises: when no place has the file it returns the source-tree
    path, and reading it then fails with an error that names that path.

    Example:
        >>> split_file().name
        'bdis_invivo_test.txt'
    """
    try:
        return share_file("config/splits", name)
    except FileNotFoundError:
        return package_root() / "config" / "splits" / name


def default_data_root() -> Path:
    """``../shared/data`` beside the source tree, where the project's real data lives (``../shared/data/README.md``);
    commands take ``--data-root`` for any other place."""
    return package_root().parent / "shared" / "data"


def check_training_folders(folders, task: str, also: dict[str, str] | None = None) -> None:
    """Refuse test and evaluation data as training data: raise if a folder is, or lies inside, one of
    :data:`EVALUATION_ONLY_FOLDERS` (matched on the trailing path components, so wherever the shared data lives).

    Args:
        folders: training (or validation) folders as given to a trainer (str or Path; None and "" are skipped).
        task: the trainer, for the message (e.g. ``"train-stereo"``).
        also: more ``{relative folder: reason}`` entries for this trainer only (e.g. every BDIS synthetic set for
            the stereo network, whose GT test sets they all are).

    Raises:
        ValueError: naming the folder, the rule it breaks and its reason.

    Example:
        >>> check_training_folders(["../shared/data/endoscopic_stereo/bdis_invivo/6"], "train-stereo")
        >>> try:
        ...     check_training_folders(["/data/endoscopic_stereo/scared_keyframe_rectified/"], "train-stereo")
        ... except ValueError as error:
        ...     print(str(error).split(":")[0])
        train-stereo does not train on /data/endoscopic_stereo/scared_keyframe_rectified
    """
    rules = {**EVALUATION_ONLY_FOLDERS, **(also or {})}
    for folder in folders or ():
        if folder is None or str(folder) == "":
            continue
        parts = Path(os.path.normpath(Path(folder).expanduser().absolute())).parts
        for relative, reason in rules.items():
            pattern = tuple(Path(relative).parts)
            if any(parts[i:i + len(pattern)] == pattern for i in range(len(parts) - len(pattern) + 1)):
                raise ValueError(f"{task} does not train on {Path(folder).expanduser()}: {relative} is {reason}; "
                                 "leave it out of the training data")
