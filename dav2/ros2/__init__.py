"""Depth a ROS 2 stack consumes: message builders, rosbag2 files, and a node.

- `messages`: numpy depth + intrinsics -> the fields of sensor_msgs Image (32FC1),
  CameraInfo, PointCloud2 (xyz + rgb) and CompressedImage, as plain typed records. No ROS
  library is imported here, so the records are built and tested the same way for a bag
  (written with `rosbags`) and for the node (published with the user's `rclpy`).
- `bag`: `RosbagSink`, dav2-run's `--format rosbag` (a rosbag2 folder with MCAP storage,
  written under a temporary name and renamed when complete).
- `node`: `dav2-ros2`, a thin rclpy shell over the live pipeline and these builders.
"""
