"""The package's import layers (``.importlinter``), checked with import-linter, and the contract can fail."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG = REPO_ROOT / ".importlinter"


def _lint_imports() -> str:
    executable = Path(sys.executable).with_name("lint-imports")
    if not executable.exists():
        found = shutil.which("lint-imports")
        if found is None:
            pytest.skip("import-linter is not installed (pip install -e '.[test]')")
        executable = Path(found)
    return str(executable)


def _run(config: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([_lint_imports(), str(config), "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_import_contracts_hold():
    result = _run(CONFIG, REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" not in result.stdout.lower() or "0 broken" in result.stdout.lower()


def test_a_core_module_importing_rclpy_breaks_the_contract(tmp_path):
    """Copy the package, make the geometry module import rclpy and the ROS layer: lint-imports must fail."""
    copy = tmp_path / "stereo_depth_ros"
    shutil.copytree(REPO_ROOT / "stereo_depth_ros", copy, ignore=shutil.ignore_patterns("weights", "__pycache__"))
    geometry = copy / "geometry.py"
    geometry.write_text(geometry.read_text() + "\nimport rclpy  # noqa\nfrom stereo_depth_ros.ros import qos  # noqa\n")
    result = _run(CONFIG, tmp_path)
    assert result.returncode != 0
    assert "stereo_depth_ros.geometry" in result.stdout
