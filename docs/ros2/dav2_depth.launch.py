"""Launch dav2-ros2 beside a camera driver: depth, camera_info and a PointCloud2 for Nav2.

    ros2 launch ./dav2_depth.launch.py model:=/models/calibrated/m.engine \
        image:=/camera/color/image_raw camera_info:=/camera/color/camera_info

dav2 is a pip package, not a ROS package, so the node runs as a process (`dav2-ros2`, from a
Python environment that sees both rclpy and dav2: a venv made with --system-site-packages after
sourcing /opt/ros/$ROS_DISTRO/setup.bash). The output keeps the camera's frame_id; the static
transform below is only needed when the camera driver does not publish base_link -> optical frame.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    model = LaunchConfiguration("model")
    image = LaunchConfiguration("image")
    camera_info = LaunchConfiguration("camera_info")
    return LaunchDescription(
        [
            DeclareLaunchArgument("model", description="a dav2 artifact; metric or dav2-calibrate'd for points"),
            DeclareLaunchArgument("image", default_value="/camera/color/image_raw"),
            DeclareLaunchArgument("camera_info", default_value="/camera/color/camera_info"),
            ExecuteProcess(
                cmd=[
                    "dav2-ros2",
                    "--model", model,
                    "--ros-cloud-stride", "4",  # 1/16 of the pixels: plenty for a costmap
                    "--ros-args",
                    "-r", ["image:=", image],
                    "-r", ["camera_info:=", camera_info],
                ],
                output="screen",
            ),
            # base_link (x forward, z up) -> the optical frame (z forward, x right, y down), 10 cm ahead, 20 cm up
            Node(
                package="tf2_ros",
                executable="static_transform_publisher",
                arguments=[
                    "--x", "0.10", "--z", "0.20", "--roll", "-1.5708", "--yaw", "-1.5708",
                    "--frame-id", "base_link", "--child-frame-id", "camera_optical_frame",
                ],
            ),
        ]
    )
