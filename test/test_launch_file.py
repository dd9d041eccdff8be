"""The launch file, checked without ``launch`` (not on PyPI): its arguments, executables and plan.

``streamdeq_ros.ros.launch_params.plan`` decides what the launch gives the node; the distro
suite runs the launch itself (``test/distro/test_launch_params.py``).
"""
import ast
import os

import pytest

from streamdeq_ros.ros.launch_params import (flag, LaunchArgumentError, node_fqn, OVERRIDES,
                                             params_file_values, plan, VIDEO_TOPIC)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROBOT = """/**:
  ros__parameters:
    cameras: ['/front', '/rear']
    input_transport: compressed
    iters: 1
    device: cpu
    score_threshold: 0.3
"""


def _calls(tree, name):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, 'id', getattr(n.func, 'attr', None)) == name]


def test_arguments_and_executables():
    with open(os.path.join(ROOT, 'launch', 'perception.launch.py')) as fh:
        tree = ast.parse(fh.read())
    args = [c.args[0].value for c in _calls(tree, 'DeclareLaunchArgument')
            if isinstance(c.args[0], ast.Constant)]
    assert sorted(args) == sorted(['namespace', 'params_file', 'use_video_source', 'log_level',
                                   'dds_profile', 'rviz', 'rviz_fixed_frame'])
    node_args = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                     and n.targets[0].id == 'NODE_ARGUMENTS')
    assert tuple(name for name, _ in node_args) == OVERRIDES
    execs = {kw.value.value for c in _calls(tree, 'Node') for kw in c.keywords
             if kw.arg == 'executable'}
    assert execs == {'streamdeq_node', 'streamdeq_video_source', 'rviz2'}
    with open(os.path.join(ROOT, 'setup.py')) as fh:
        setup = fh.read()
    for e in execs - {'rviz2'}:
        assert "'%s = streamdeq_ros." % e in setup
    assert any(isinstance(n, ast.FunctionDef) and n.name == 'generate_launch_description'
               for n in tree.body)


def test_a_params_file_alone_decides_and_starts_no_video_source(tmp_path):
    f = tmp_path / 'robot.yaml'
    f.write_text(ROBOT)
    p = plan(dict.fromkeys(OVERRIDES, ''), str(f))
    assert p.overrides == {} and not p.video_source
    assert p.file_values['cameras'] == ['/front', '/rear']


def test_each_given_argument_wins_and_only_it(tmp_path):
    f = tmp_path / 'robot.yaml'
    f.write_text(ROBOT)
    p = plan({'cameras': '[/side, /top]', 'iters': '3'}, str(f))
    assert p.overrides == {'cameras': ['/side', '/top'], 'iters': 3} and not p.video_source
    p = plan({'image_topic': '/cam', 'input_transport': 'raw', 'device': 'cuda:1',
              'checkpoint': 'multi_tiny_sur'}, str(f))
    assert p.overrides == {'cameras': ['/cam'], 'input_transport': 'raw', 'device': 'cuda:1',
                           'checkpoint': 'multi_tiny_sur'}
    assert plan({'cameras': '/a, /b'}).overrides['cameras'] == ['/a', '/b']
    assert plan({'iters': '3.0'}).overrides['iters'] == 3.0      # the node refuses it by type
    p = plan({'checkpoint': 'official:/w/MDEQ_Small_Seg.pkl:small', 'input_size': '[512, 1024]'})
    assert p.overrides['checkpoint'] == 'official:/w/MDEQ_Small_Seg.pkl:small'
    assert p.overrides['input_size'] == [512, 1024]


def test_the_video_source_runs_only_when_no_camera_is_named(tmp_path):
    p = plan({})
    assert p.video_source and p.overrides == {'cameras': [VIDEO_TOPIC]}
    assert not plan({'image_topic': '/cam'}).video_source
    assert not plan({}, use_video_source='false').video_source
    forced = plan({'image_topic': '/cam'}, use_video_source='true')
    assert forced.video_source and forced.overrides['cameras'] == ['/cam']
    f = tmp_path / 'other.yaml'
    f.write_text('/**:\n  ros__parameters:\n    iters: 4\n')
    assert plan({}, str(f)).video_source


def test_params_file_keys_match_like_rcl(tmp_path):
    f = tmp_path / 'p.yaml'
    f.write_text('/**:\n  ros__parameters:\n    iters: 1\n    a: {b: 2}\n'
                 '/robot/streamdeq:\n  ros__parameters:\n    iters: 5\n'
                 'other:\n  ros__parameters:\n    iters: 9\n'
                 '/**/streamdeq:\n  ros__parameters:\n    tol: 0.1\n')
    assert params_file_values(str(f), node_fqn('')) == {'iters': 1, 'a.b': 2, 'tol': 0.1}
    assert params_file_values(str(f), node_fqn('/robot/')) == {'iters': 5, 'a.b': 2,
                                                               'tol': 0.1}
    assert node_fqn('robot') == '/robot/streamdeq'


@pytest.mark.parametrize('given, text, reason', [
    ({'image_topic': '/a', 'cameras': '[/b]'}, None, 'give cameras or image_topic, not both'),
    ({'cameras': '[1, 2]'}, None, 'cameras must be a list of topic names'),
    ({}, 'just text', 'is not a ROS 2 parameters file'),
    ({}, '/**: {ros__parameters: [1]}', "has no 'ros__parameters' mapping"),
    ({}, '/**: [', 'is not readable YAML'),
])
def test_bad_arguments_and_files_are_refused_in_one_sentence(tmp_path, given, text, reason):
    path = ''
    if text is not None:
        path = str(tmp_path / 'p.yaml')
        with open(path, 'w') as fh:
            fh.write(text)
    with pytest.raises(LaunchArgumentError, match=reason):
        plan(given, path)
    with pytest.raises(LaunchArgumentError, match='does not exist'):
        plan({}, str(tmp_path / 'missing.yaml'))


def test_depth_topics_and_rviz_arguments(tmp_path):
    p = plan(dict(dict.fromkeys(OVERRIDES, ''), image_topic='/cam/color/image_raw',
                  depth_topics='/cam/aligned_depth_to_color/image_raw'))
    assert p.overrides['depth_topics'] == ['/cam/aligned_depth_to_color/image_raw']
    two = plan(dict(dict.fromkeys(OVERRIDES, ''), cameras='/a,/b',
                    depth_topics="['/a/depth', '']"))
    assert two.overrides['depth_topics'] == ['/a/depth', '']
    assert flag('rviz', 'True') is True and flag('rviz', 'false') is False
    with pytest.raises(LaunchArgumentError, match="rviz must be 'true' or 'false', got 'yes'"):
        flag('rviz', 'yes')


def test_the_rviz_view_shows_the_node_s_topics():
    import yaml
    from streamdeq_ros.ros.outputs import OUTPUTS, REFINED
    with open(os.path.join(ROOT, 'config', 'streamdeq.rviz')) as fh:
        view = yaml.safe_load(fh)
    displays = view['Visualization Manager']['Displays']
    topics = {d['Topic']['Value'] for d in displays if 'Topic' in d}
    published = {'/streamdeq/' + name for outs in OUTPUTS.values() for _, _, name in outs}
    published |= {'/streamdeq/' + r[2] for r in REFINED}
    assert topics and topics <= published
    assert {'/streamdeq/markers', '/streamdeq/keypoints_3d', '/streamdeq/overlay'} <= topics
    with open(os.path.join(ROOT, 'setup.py')) as fh:
        assert "glob('config/*.rviz')" in fh.read()
