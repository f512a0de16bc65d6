"""Reading YAML configuration files (camera_info YAML, ROS 2 parameters files) with errors that name the file.

No rclpy and no torch here: the launch-side code (``ros/bringup_spec.py``) and the bag tools (``data/stereo_bag.py``)
both import it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_yaml(path: str | Path, what: str) -> Any:
    """Parse a YAML file with ``yaml.safe_load`` (no object construction, so a file can never run code).

    Args:
        path: the file.
        what: how error messages name the file, e.g. ``"parameters file"``.

    Returns:
        the parsed document (a mapping, list, scalar, or None for an empty file); callers check its shape.

    Raises:
        FileNotFoundError: ``"<what> <path> does not exist"``.
        ValueError: ``"<what> <path> is not valid YAML: <parser message>"``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"{what} {path} is not valid YAML: {error}") from error
