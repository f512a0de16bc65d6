"""ament_python package set-up: works with colcon in a ROS 2 workspace and with pip on plain Python."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "stereo_depth_ros"

NODES = [
    "stereo_depth_node = stereo_depth_ros.ros.stereo_node:main",
    "mono_depth_node = stereo_depth_ros.ros.mono_node:main",
    "segmentation_node = stereo_depth_ros.ros.segmentation_node:main",
    "mask_fusion_node = stereo_depth_ros.ros.segmentation_node:fusion_main",
    "super_resolution_node = stereo_depth_ros.ros.sr_node:main",
    "cross_modal_node = stereo_depth_ros.ros.cross_modal_node:main",
    "stereo_depth_bringup = stereo_depth_ros.ros.bringup:main",
]

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*", "benchmarks"]),
    package_data={PACKAGE: ["weights/*.safetensors", "weights/*.json"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/config/splits", glob("config/splits/*.txt")),  # held-out pair lists
        (f"share/{PACKAGE}/rviz", glob("rviz/*.rviz")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "numpy",
        "opencv-python-headless",
        "torch",
        "safetensors",
        "tqdm",
        "matplotlib",
        "pyyaml",
        "rosbags",
        "rosbags-image",
        "scikit-image",
        "scipy",
        # The fast CPU path (3-4x eager PyTorch, docs/benchmarks.md): a plain install must get it.
        "onnx",
        "onnxruntime",
    ],
    # "onnx" stays as an empty extra so that existing `pip install .[onnx]` commands keep working.
    extras_require={"onnx": [], "test": ["pytest", "import-linter"]},
    zip_safe=True,
    maintainer="stereo_depth_ros maintainers",
    maintainer_email="maintainers@stereo-depth-ros.invalid",
    description="Learned stereo depth for stereo endoscopes and robot cameras as ROS 2 nodes.",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={"console_scripts": NODES + ["stereo-depth-ros = stereo_depth_ros.cli:main"]},
)
