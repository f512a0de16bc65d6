"""The docstring examples of every core module run and print what they say (doctest).

Core = every module of the package outside ``stereo_depth_ros.ros`` (which needs rclpy); a core module that imports
rclpy anyway is skipped here (and breaks the import contract in test_architecture.py).
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import types

import pytest

import stereo_depth_ros

CORE_MODULES = sorted(info.name for info in pkgutil.walk_packages(stereo_depth_ros.__path__, "stereo_depth_ros.")
                      if not info.name.startswith("stereo_depth_ros.ros"))


def test_the_core_modules_are_found():
    assert {"stereo_depth_ros.images", "stereo_depth_ros.models.registry", "stereo_depth_ros.models.inference",
            "stereo_depth_ros.evaluation.metrics"} <= set(CORE_MODULES)


def run_examples(module, name: str) -> doctest.TestResults:
    """Run every docstring example of ``module`` (ELLIPSIS and NORMALIZE_WHITESPACE on); returns the counts."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):
        if test.examples:
            runner.run(test, out=lambda text: None)
    return runner.summarize(verbose=False)


def test_a_wrong_example_is_counted_as_failed():
    module = types.ModuleType("example_module")
    exec('def double(x):\n    """\n    >>> double(2)\n    5\n    """\n    return 2 * x\n', module.__dict__)
    assert run_examples(module, "example_module") == (1, 1)


@pytest.mark.parametrize("name", CORE_MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    monkeypatch.setenv("STEREO_DEPTH_ROS_CACHE", str(tmp_path / "onnx"))
    module = importlib.import_module(name)
    if "rclpy" in vars(module):
        pytest.skip(f"{name} imports rclpy")
    result = run_examples(module, name)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {name} failed " \
                               f"(python -m doctest -v {module.__file__})"
