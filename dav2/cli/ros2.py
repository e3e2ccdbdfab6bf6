"""ROS 2 options shared by dav2-run (--format rosbag) and dav2-ros2, and the dav2-ros2 command.

`ros_options` adds the --ros-* options and hands the command one `ros` argument, a checked
`RosSettings`, so a command that takes them gains one parameter, not four.
"""

import functools
from collections.abc import Callable

import click

from dav2.cli.common import CONTEXT, user_errors
from dav2.ros2.messages import DEFAULT_FRAME_ID, DEFAULT_PREFIX, MAX_CLOUD_STRIDE, RosSettings

ROS_NAMES = ("ros_frame_id", "ros_prefix", "ros_cloud_stride", "ros_color")


def ros_options(default_prefix: str = DEFAULT_PREFIX) -> Callable:
    """The --ros-* options, collected into `ros=RosSettings(...)` for the command."""

    def apply(command: Callable) -> Callable:
        @functools.wraps(command)
        def collected(*args, **kwargs):
            values = [kwargs.pop(name) for name in ROS_NAMES]
            kwargs["ros"] = user_errors(RosSettings)(*values)  # a bad name: one error line, exit 1
            return command(*args, **kwargs)

        options = [
            click.option(
                "--ros-frame-id",
                default=DEFAULT_FRAME_ID,
                help="--format rosbag / dav2-ros2: the frame_id of every message's header (the camera's optical "
                "frame in your TF tree).",
            ),
            click.option(
                "--ros-prefix",
                default=default_prefix,
                help="--format rosbag / dav2-ros2: the topics' prefix: PREFIX/depth/image (metres) or "
                "PREFIX/disparity/image (a relative model), PREFIX/camera_info, PREFIX/points, "
                "PREFIX/depth/color/compressed.",
            ),
            click.option(
                "--ros-cloud-stride",
                type=click.IntRange(1, MAX_CLOUD_STRIDE),
                default=1,
                help="--format rosbag / dav2-ros2: one PointCloud2 point every N pixels in each direction "
                "(N² fewer points).",
            ),
            click.option(
                "--ros-color",
                is_flag=True,
                help="--format rosbag / dav2-ros2: also the coloured depth as a JPEG CompressedImage.",
            ),
        ]
        for option in reversed(options):
            collected = option(collected)
        return collected

    return apply


@click.command(context_settings=CONTEXT)
@click.option("--model", required=True, help="Any dav2 artifact (.onnx, .engine, .xml); a calibrated one gives metres.")
@click.option("--intrinsics", default=None, help="fx,fy,cx,cy[,width,height] or a calibration YAML, used until a "
              "camera_info message arrives (camera_info wins).")  # fmt: skip
@click.option("--anchors", default=None, help="CSV of u,v,metres: metres from measured points, refitted each frame.")
@click.option(
    "--stabilize", is_flag=True, help="Align each frame's relative depth to a running reference (no flicker)."
)
@click.option("--input-size", type=int, default=None, help="Short side fed to a dynamic artifact.")
@click.option("--threads", type=int, default=0, help="CPU threads for ONNX Runtime / OpenVINO (0: their default).")
@ros_options(default_prefix="")
@user_errors
def ros2_main(model, intrinsics, anchors, stabilize, input_size, threads, ros):
    """A ROS 2 node: subscribes to `image` (+ `camera_info`), publishes depth, camera_info and
    PointCloud2 (metric depth) with the newest-frame policy of dav2-run's live pipeline.

    Needs rclpy from a ROS 2 install (Humble or newer): source /opt/ros/$ROS_DISTRO/setup.bash
    first. Topics are relative, so remap or namespace them as usual (--ros-args -r image:=/cam/image_raw).
    """
    from dav2.ros2.node import NodeOptions, run_node

    run_node(
        NodeOptions(
            model=model,
            intrinsics=intrinsics,
            anchors=anchors,
            stabilize=stabilize,
            input_size=input_size,
            threads=threads,
            ros=ros,
        )
    )
