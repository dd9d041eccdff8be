"""Build the test-support ``vision_msgs`` interface package into a pip-made ROS 2 venv.

Used only where no ROS 2 distro provides vision_msgs (see ``test/ros_support``). Two steps:

1. The PyPI ROS wheels ship ``export_*__rosidl_generator_pyExport.cmake`` files that name the
   wheel builder's Python and numpy include folders; rewrite them to this interpreter's, or cmake
   refuses to configure any interface package that depends on them.
2. Configure, build and install the package with cmake straight into the venv prefix.
"""
import glob
import os
import re
import shutil
import subprocess
import sys
import sysconfig

import numpy

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SRC = os.path.join(ROOT, 'test', 'ros_support', 'vision_msgs')


def fix_exports(prefix):
    """Point the wheels' generator_py exports at this interpreter's include folders."""
    good = '%s;%s' % (sysconfig.get_paths()['include'], numpy.get_include())
    pattern = re.compile(r'INTERFACE_INCLUDE_DIRECTORIES "([^"]*/opt/python/[^"]*)"')
    changed = 0
    for path in glob.glob(os.path.join(
            prefix, 'share', '*', 'cmake', 'export_*__rosidl_generator_pyExport.cmake')):
        with open(path) as f:
            text = f.read()
        new = pattern.sub('INTERFACE_INCLUDE_DIRECTORIES "%s"' % good, text)
        if new != text:
            with open(path, 'w') as f:
                f.write(new)
            changed += 1
    return changed


def build(prefix):
    """Configure, build and install vision_msgs into ``prefix``."""
    build_dir = os.path.join(prefix, 'build', 'vision_msgs')
    env = dict(os.environ, AMENT_PREFIX_PATH=prefix, CMAKE_PREFIX_PATH=prefix)
    env['PATH'] = os.path.join(prefix, 'bin') + os.pathsep + env.get('PATH', '')
    cmd = ['cmake', '-S', SRC, '-B', build_dir, '-DCMAKE_INSTALL_PREFIX=' + prefix,
           '-DBUILD_TESTING=OFF', '-DPython3_EXECUTABLE=' + sys.executable,
           '-DCMAKE_BUILD_TYPE=Release']
    if shutil.which('ninja'):
        cmd += ['-G', 'Ninja']
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(['cmake', '--build', build_dir, '--target', 'install'], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def main():
    """Fix the exports, then build; the venv is the running interpreter's prefix."""
    prefix = sys.prefix
    print('fixed %d cmake export files' % fix_exports(prefix))
    build(prefix)
    print('vision_msgs installed into %s' % prefix)


if __name__ == '__main__':
    main()
