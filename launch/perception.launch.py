"""Launch the streamdeq node, and the video source when no camera is named.

Examples: ``ros2 launch streamdeq_ros perception.launch.py`` (generated input),
``ros2 launch streamdeq_ros perception.launch.py image_topic:=/camera/image_raw iters:=1``,
``ros2 launch streamdeq_ros perception.launch.py cameras:="[/front/image, /rear/image]"`` and
``ros2 launch streamdeq_ros perception.launch.py params_file:=my.yaml``.

The node gets ``params_file`` first, then only the launch arguments the user gave (an argument
left at '' passes nothing), so the file's values stand unless the command line names them. The
video source starts (``use_video_source:=auto``) only when neither the command line nor the
params file names a camera (see :mod:`streamdeq_ros.ros.launch_params`).

``rviz:=true`` also starts ``rviz2`` with ``config/streamdeq.rviz`` (fixed frame
``rviz_fixed_frame``) when rviz2 is installed, and says so in one line when it is not.

If the perception node exits (a crash, or a start-up refusal), the whole launch shuts down: a
video source or camera feeding a dead node is worse than a stopped stack. The processes started
here get the Fast DDS profile ``config/fastdds_large_images.xml`` (``dds_profile``; '' for
Fast DDS's defaults), unless FASTDDS_DEFAULT_PROFILES_FILE is already set.
"""
import os
import shutil

from ament_index_python.packages import get_package_share_directory, PackageNotFoundError
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, LogInfo, OpaqueFunction,
                            SetEnvironmentVariable, Shutdown, UnsetEnvironmentVariable)
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PythonExpression
from launch_ros.actions import Node

from streamdeq_ros.ros.launch_params import flag, plan, VIDEO_TOPIC

#: launch arguments that set a node parameter when given ('' = leave the params file's value)
NODE_ARGUMENTS = [
    ('cameras', "camera image topics, e.g. '[/front/image, /rear/image]' or "
                "'/front/image,/rear/image'"),
    ('image_topic', 'one camera image topic (the one-camera form of cameras)'),
    ('depth_topics', 'aligned depth image topic per camera, e.g. '
                     "'[/camera/aligned_depth_to_color/image_raw]' ('' in the list: none)"),
    ('input_transport', 'raw or compressed'),
    ('iters', 'solver iterations per frame'),
    ('device', 'auto, cpu, cuda or cuda:N'),
    ('checkpoint', 'the model: a bundled name, a checkpoint file, a model folder (e.g. one '
                   'written by streamdeq import-official) or official:FILE[:small|large|xl]'),
    ('input_size', "network input '[height, width]' (multiples of 32; [0, 0]: the model's)"),
]


def _nodes(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)
    params_file = arg('params_file')
    ns = arg('namespace')
    p = plan({name: arg(name) for name, _ in NODE_ARGUMENTS}, params_file, ns,
             arg('use_video_source'))
    log = ['--ros-args', '--log-level', arg('log_level')]
    parameters = ([params_file] if params_file else []) + ([p.overrides] if p.overrides else [])
    actions = [Node(package='streamdeq_ros', executable='streamdeq_node', name='streamdeq',
                    namespace=ns, output='screen', parameters=parameters, arguments=log,
                    on_exit=Shutdown(reason='the streamdeq node exited'))]
    if p.video_source:
        actions.append(Node(package='streamdeq_ros', executable='streamdeq_video_source',
                            name='streamdeq_video_source', namespace=ns, output='screen',
                            remappings=[('image', VIDEO_TOPIC)],
                            parameters=[{'source': 'generated'}], arguments=log))
    if flag('rviz', arg('rviz')):
        actions.append(_rviz(arg('rviz_fixed_frame'), ns))
    return actions


def _rviz(fixed_frame, ns):
    """Return rviz2 with the package's view, or one line saying that rviz2 is not installed."""
    try:
        get_package_share_directory('rviz2')
        found = True
    except PackageNotFoundError:
        found = shutil.which('rviz2') is not None
    if not found:
        return LogInfo(msg='rviz:=true: rviz2 is not installed (apt install '
                           'ros-$ROS_DISTRO-rviz2); running without it')
    view = os.path.join(get_package_share_directory('streamdeq_ros'), 'config', 'streamdeq.rviz')
    return Node(package='rviz2', executable='rviz2', name='streamdeq_rviz', namespace=ns,
                output='screen', arguments=['-d', view, '-f', fixed_frame])


def generate_launch_description():
    """Declare the arguments; start the node and, without a camera, the video source."""
    share = get_package_share_directory('streamdeq_ros')
    dds_profile = LaunchConfiguration('dds_profile')
    profile_wanted = PythonExpression(["'", dds_profile, "' != ''"])
    return LaunchDescription([
        DeclareLaunchArgument('namespace', default_value='', description='node namespace'),
        DeclareLaunchArgument('params_file', default_value='',
                              description="parameters file of the node ('' = the node's "
                                          'defaults; config/streamdeq.yaml lists them)'),
    ] + [
        DeclareLaunchArgument(name, default_value='',
                              description=text + " ('' = the params file's value)")
        for name, text in NODE_ARGUMENTS
    ] + [
        DeclareLaunchArgument('use_video_source', default_value='auto',
                              description='true, false or auto (= when neither the command '
                                          'line nor params_file names a camera)'),
        DeclareLaunchArgument('log_level', default_value='info', description='ROS log level'),
        DeclareLaunchArgument('rviz', default_value='false',
                              description='true: start rviz2 with config/streamdeq.rviz'),
        DeclareLaunchArgument('rviz_fixed_frame', default_value='camera',
                              description="RViz's fixed frame: the camera's frame_id (the video "
                                          "source's is 'camera') or a frame TF connects it to"),
        DeclareLaunchArgument(
            'dds_profile',
            default_value=EnvironmentVariable(
                'FASTDDS_DEFAULT_PROFILES_FILE',
                default_value=os.path.join(share, 'config', 'fastdds_large_images.xml')),
            description='Fast DDS XML profile for the processes started here (shared memory '
                        "for large frames); '' = Fast DDS's defaults. Give the camera driver "
                        'the same profile: the publisher decides how frames travel'),
        SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE', dds_profile,
                               condition=IfCondition(profile_wanted)),
        UnsetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE',
                                 condition=UnlessCondition(profile_wanted)),
        OpaqueFunction(function=_nodes),
    ])
