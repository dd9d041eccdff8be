"""The launch file, checked without ``launch`` (not on PyPI): arguments and executables."""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _calls(tree, name):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, 'id', getattr(n.func, 'attr', None)) == name]


def test_arguments_and_executables():
    with open(os.path.join(ROOT, 'launch', 'perception.launch.py')) as fh:
        tree = ast.parse(fh.read())
    args = [c.args[0].value for c in _calls(tree, 'DeclareLaunchArgument')]
    assert args == ['namespace', 'params_file', 'image_topic', 'input_transport', 'iters',
                    'device', 'use_video_source', 'log_level', 'dds_profile']
    execs = {kw.value.value for c in _calls(tree, 'Node') for kw in c.keywords
             if kw.arg == 'executable'}
    assert execs == {'streamdeq_node', 'streamdeq_video_source'}
    with open(os.path.join(ROOT, 'setup.py')) as fh:
        setup = fh.read()
    for e in execs:
        assert "'%s = streamdeq_ros." % e in setup
    assert any(isinstance(n, ast.FunctionDef) and n.name == 'generate_launch_description'
               for n in tree.body)
