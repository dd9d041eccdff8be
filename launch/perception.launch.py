"""Launch the streamdeq node, and the video source when no camera topic is given.

Examples: ``ros2 launch streamdeq_ros perception.launch.py`` (generated input) and
``ros2 launch streamdeq_ros perception.launch.py image_topic:=/camera/image_raw iters:=1``.

If the perception node exits (a crash, or a start-up refusal), the whole launch shuts down: a
video source or camera feeding a dead node is worse than a stopped stack. The processes started
here get the Fast DDS profile ``config/fastdds_large_images.xml`` (``dds_profile``; '' for
Fast DDS's defaults), unless FASTDDS_DEFAULT_PROFILES_FILE is already set.
"""
import os
from typing import List

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, SetEnvironmentVariable, Shutdown,
                            UnsetEnvironmentVariable)
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

VIDEO_TOPIC = '/streamdeq_video_source/image'


def generate_launch_description():
    """Declare the arguments; start the node and, without a camera, the video source."""
    share = get_package_share_directory('streamdeq_ros')
    ns = LaunchConfiguration('namespace')
    image_topic = LaunchConfiguration('image_topic')
    use_source = LaunchConfiguration('use_video_source')
    log_level = LaunchConfiguration('log_level')
    dds_profile = LaunchConfiguration('dds_profile')
    camera = PythonExpression(["'", image_topic, "' or '", VIDEO_TOPIC, "'"])
    source_wanted = PythonExpression(
        ["'", use_source, "' == 'true' or ('", use_source, "' == 'auto' and '",
         image_topic, "' == '')"])
    profile_wanted = PythonExpression(["'", dds_profile, "' != ''"])
    return LaunchDescription([
        DeclareLaunchArgument('namespace', default_value='', description='node namespace'),
        DeclareLaunchArgument('params_file',
                              default_value=os.path.join(share, 'config', 'streamdeq.yaml'),
                              description='parameters file of the node'),
        DeclareLaunchArgument('image_topic', default_value='',
                              description="camera topic; '' = the bundled video source"),
        DeclareLaunchArgument('input_transport', default_value='raw',
                              description='raw or compressed'),
        DeclareLaunchArgument('iters', default_value='2', description='iterations per frame'),
        DeclareLaunchArgument('device', default_value='auto', description='auto, cpu, cuda'),
        DeclareLaunchArgument('use_video_source', default_value='auto',
                              description="true, false or auto (= when image_topic is '')"),
        DeclareLaunchArgument('log_level', default_value='info', description='ROS log level'),
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
        Node(package='streamdeq_ros', executable='streamdeq_node', name='streamdeq',
             namespace=ns, output='screen',
             parameters=[LaunchConfiguration('params_file'), {
                 'cameras': ParameterValue(["['", camera, "']"], value_type=List[str]),
                 'input_transport': LaunchConfiguration('input_transport'),
                 'iters': ParameterValue(LaunchConfiguration('iters'), value_type=int),
                 'device': LaunchConfiguration('device'),
             }],
             arguments=['--ros-args', '--log-level', log_level],
             on_exit=Shutdown(reason='the streamdeq node exited')),
        Node(package='streamdeq_ros', executable='streamdeq_video_source',
             name='streamdeq_video_source', namespace=ns, output='screen',
             condition=IfCondition(source_wanted),
             remappings=[('image', VIDEO_TOPIC)],
             parameters=[{'source': 'generated'}],
             arguments=['--ros-args', '--log-level', log_level]),
    ])
