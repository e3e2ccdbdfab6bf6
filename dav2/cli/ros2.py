"""ROS 2 options shared by dav2-run (--format rosbag) and dav2-ros2, and the dav2-ros2 command.

`ros_options` adds the --ros-* options and hands the command one `ros` argument, a checked
`RosSettings`, so a command that takes them gains one parameter, not four.
"""

import functools
import sys
from collections.abc import Callable

import click

from dav2.cli.common import CONTEXT, OptionGroup, user_errors
from dav2.ros2.messages import DEFAULT_FRAME_ID, DEFAULT_PREFIX, MAX_CLOUD_STRIDE, RosSettings


def ros_option_group(default_prefix: str = DEFAULT_PREFIX) -> OptionGroup:
    """The --ros-* options, parsed into one checked `RosSettings`."""
    return OptionGroup(
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
            "PREFIX/disparity/image (a relative model), each with its camera_info beside it, PREFIX/points, "
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
        parser=parse_ros_settings,
    )


def parse_ros_settings(ros_frame_id: str, ros_prefix: str, ros_cloud_stride: int, ros_color: bool) -> RosSettings:
    return RosSettings(ros_frame_id, ros_prefix, ros_cloud_stride, ros_color)


ROS_OPTIONS = ros_option_group()


def ros_options(default_prefix: str = DEFAULT_PREFIX) -> Callable:
    """The --ros-* options, collected into `ros=RosSettings(...)` for a command that takes them
    as one parameter (dav2-ros2)."""
    group = ros_option_group(default_prefix)

    def apply(command: Callable) -> Callable:
        @functools.wraps(command)
        def collected(*args, **kwargs):
            kwargs["ros"] = user_errors(group.parse)(kwargs)  # a bad name: one error line, exit 1
            return command(*args, **kwargs)

        return group(collected)

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
@ros_options(default_prefix="dav2")
@click.pass_obj
@user_errors
def ros2_main(ros_args, model, intrinsics, anchors, stabilize, input_size, threads, ros):
    """A ROS 2 node: subscribes to `image` (+ `camera_info`), publishes depth, camera_info and
    PointCloud2 (metric depth) with the newest-frame policy of dav2-run's live pipeline.

    Needs rclpy from a ROS 2 install (Humble or newer): source /opt/ros/$ROS_DISTRO/setup.bash
    first. Topics are relative, so remap or namespace them as usual:

    \b
      dav2-ros2 --model m.engine --ros-args -r image:=/camera/color/image_raw \\
          -r camera_info:=/camera/color/camera_info
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
            ros_args=tuple(ros_args or ()),
        )
    )


def ros2_entry(argv: list[str] | None = None) -> None:
    """The dav2-ros2 console script: dav2's options, then `--ros-args ...` for rclpy (remappings,
    parameters, a namespace), as `ros2 run` passes them."""
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--ros-args") if "--ros-args" in argv else len(argv)
    ros2_main.main(args=argv[:split], obj=argv[split:], prog_name="dav2-ros2")
