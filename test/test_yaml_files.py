"""read_yaml: the one YAML reader behind camera_info YAML files and ROS 2 parameters files."""

import pytest

from stereo_depth_ros.data.stereo_bag import CameraInfoData
from stereo_depth_ros.ros.bringup_spec import read_params_file
from stereo_depth_ros.yaml_files import read_yaml


def test_read_yaml_parses_and_names_the_file_in_errors(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("a: 1\nb: [2, 3]\n")
    assert read_yaml(good, "test file") == {"a": 1, "b": [2, 3]}
    with pytest.raises(FileNotFoundError, match=r"test file .*missing\.yaml does not exist"):
        read_yaml(tmp_path / "missing.yaml", "test file")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ValueError, match=r"test file .*bad\.yaml is not valid YAML"):
        read_yaml(bad, "test file")
    unsafe = tmp_path / "unsafe.yaml"  # safe_load: a YAML tag that would build a Python object is refused
    unsafe.write_text("!!python/object/apply:os.system ['true']\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        read_yaml(unsafe, "test file")


def test_both_callers_keep_their_own_file_description(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ValueError, match="camera_info YAML .* is not valid YAML"):
        CameraInfoData.from_yaml(bad)
    with pytest.raises(ValueError, match="parameters file .* is not valid YAML"):
        read_params_file(bad)
    with pytest.raises(FileNotFoundError, match="parameters file .* does not exist"):
        read_params_file(tmp_path / "missing.yaml")
