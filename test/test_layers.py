"""The package's layers, read from its source.

No circles, no private names across modules, the product never reaching up into the tools,
the model core and the runtime never into ROS. Imports inside functions count as much as
those at the top: a lazy import is still an edge.
"""
import ast
import collections
import os

import streamdeq_ros

ROOT = os.path.dirname(streamdeq_ros.__file__)
#: the floors, bottom up: the model core, the runtime around it (the product without ROS),
#: the ROS layer, the tools (commands, training, evaluation, benches, the test/bench harness)
CORE = ('streamdeq_ros.model', 'streamdeq_ros.data', 'streamdeq_ros.models')
RUNTIME = CORE + ('streamdeq_ros.runtime',)
TOOLS = ('streamdeq_ros.tools',)
ROS = ('streamdeq_ros.ros',)
ROS_PACKAGES = ('rclpy', 'sensor_msgs', 'std_msgs', 'vision_msgs', 'diagnostic_msgs',
                'cv_bridge', 'sensor_msgs_py', 'lifecycle_msgs', 'rcl_interfaces')


def _modules():
    mods = {}
    for folder, _, files in os.walk(ROOT):
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, '.')
                mods[rel[:-len('.__init__')] if rel.endswith('.__init__') else rel] = path
    return mods


def _imports():
    """Return what each module of the package imports, read from its source.

    (modules, module -> package modules it imports, [(module, source, private name)],
    module -> outside top-level packages it imports).
    """
    mods = _modules()
    edges, private, outside = collections.defaultdict(set), [], collections.defaultdict(set)
    for mod, path in mods.items():
        with open(path) as fh:
            tree = ast.parse(fh.read(), path)
        package = mod if path.endswith('__init__.py') else mod.rsplit('.', 1)[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in mods:
                        edges[mod].add(alias.name)
                    outside[mod].add(alias.name.split('.')[0])
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split('.')[:len(package.split('.')) - node.level + 1]
                    target = '.'.join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ''
                outside[mod].add(target.split('.')[0])
                for alias in node.names:
                    full = target + '.' + alias.name
                    dep = full if full in mods else target
                    if dep in mods and dep != mod:
                        edges[mod].add(dep)
                        if alias.name.startswith('_') and dep == target:
                            private.append((mod, target, alias.name))
    return mods, edges, private, outside


def _in(mod, layer):
    return any(mod == p or mod.startswith(p + '.') for p in layer)


def _cycles(mods, edges):
    """Tarjan's strongly connected components with more than one module."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))
    for v in sorted(mods):
        if v not in index:
            visit(v)
    return found


def test_the_reader_sees_the_package():
    mods, edges, _, _ = _imports()
    assert 'streamdeq_ros.ros.node' in mods and 'streamdeq_ros.runtime.pipeline' in mods
    assert 'streamdeq_ros.runtime.pipeline' in edges['streamdeq_ros.ros.node']
    assert 'streamdeq_ros.model.solvers' in edges['streamdeq_ros.runtime.stream']
    assert 'streamdeq_ros.tools.bench.node' in mods
    # a circle is found when there is one
    assert _cycles(['a', 'b', 'c'], collections.defaultdict(set, a={'b'}, b={'a'})) == [['a', 'b']]


def test_no_module_imports_itself_through_others():
    mods, edges, _, _ = _imports()
    assert _cycles(mods, edges) == []


def test_no_private_name_crosses_modules():
    _, _, private, _ = _imports()
    assert private == []


def test_the_product_never_imports_a_tool_and_the_runtime_never_ros():
    mods, edges, _, outside = _imports()
    product = [m for m in mods if _in(m, RUNTIME + ROS)]
    up = {(m, d) for m in product for d in edges[m] if not _in(d, RUNTIME + ROS)}
    assert up == set()
    runtime = [m for m in mods if _in(m, RUNTIME)]
    assert {(m, d) for m in runtime for d in edges[m] if _in(d, ROS)} == set()
    assert {(m, p) for m in runtime for p in outside[m] if p in ROS_PACKAGES} == set()


def test_every_module_lives_on_one_floor():
    mods, _, _, _ = _imports()
    floors = RUNTIME + ROS + TOOLS
    homeless = sorted(m for m in mods if m != 'streamdeq_ros' and not _in(m, floors))
    assert homeless == []


def test_the_core_never_imports_the_runtime():
    mods, edges, _, _ = _imports()
    assert {(m, d) for m in mods if _in(m, CORE) for d in edges[m]
            if _in(d, ('streamdeq_ros.runtime',))} == set()
