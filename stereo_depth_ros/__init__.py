"""stereo_depth_ros: stereo and monocular depth for stereo endoscopes and robot cameras, as ROS 2 nodes.

The core (``models``, ``losses``, ``geometry``, ``data``, ``training``, ``evaluation``) never imports rclpy;
the ROS layer lives in :mod:`stereo_depth_ros.ros`.
"""

__version__ = "0.1.0"
