"""Launch the streamdeq node, and the video source when no camera topic is given.

Examples: ``ros2 launch streamdeq_ros perception.launch.py`` (generated input) and
``ros2 launch streamdeq_ros perception.launch.py image_topic:=/camera/image_raw iters:=1``.
"""
import os
from typing import List

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
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
    camera = PythonExpression(["'", image_topic, "' or '", VIDEO_TOPIC, "'"])
    source_wanted = PythonExpression(
        ["'", use_source, "' == 'true' or ('", use_source, "' == 'auto' and '",
         image_topic, "' == '')"])
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
        Node(package='streamdeq_ros', executable='streamdeq_node', name='streamdeq',
             namespace=ns, output='screen',
             parameters=[LaunchConfiguration('params_file'), {
                 'cameras': ParameterValue(["['", camera, "']"], value_type=List[str]),
                 'input_transport': LaunchConfiguration('input_transport'),
                 'iters': ParameterValue(LaunchConfiguration('iters'), value_type=int),
                 'device': LaunchConfiguration('device'),
             }],
             arguments=['--ros-args', '--log-level', log_level]),
        Node(package='streamdeq_ros', executable='streamdeq_video_source',
             name='streamdeq_video_source', namespace=ns, output='screen',
             condition=IfCondition(source_wanted),
             remappings=[('image', VIDEO_TOPIC)],
             parameters=[{'source': 'generated'}],
             arguments=['--ros-args', '--log-level', log_level]),
    ])
