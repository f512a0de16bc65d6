"""stereo_depth_ros: learned stereo depth for stereo endoscopes and robot cameras, as ROS 2 nodes.

Today: the coarse-to-fine self-supervised stereo network and OpenCV SGBM behind one model registry, the stereo node,
bag replay, evaluation and training. The layers (``.importlinter``, checked in the tests): the core (``models``,
``losses``, ``geometry``, ``images``, ``data``, ``training``, ``evaluation``) never imports rclpy; the ROS layer
lives in :mod:`stereo_depth_ros.ros`. docs/platform.md describes the platform.
"""

__version__ = "0.1.0"
