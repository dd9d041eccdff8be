"""Find the package's console scripts the way ROS does, in a colcon install and in the pip venv.

ament_python installs them to ``<prefix>/lib/streamdeq_ros/`` (what ``ros2 run`` and launch_ros
use); the ament index (``get_package_prefix``) gives the prefix. A pip install without an ament
index puts them next to the interpreter (``<venv>/bin``).
"""
import os
import shutil
import sys

PACKAGE = 'streamdeq_ros'


def executable(name: str) -> str:
    """Return the path of console script ``name`` of this package."""
    tried = []
    try:
        from ament_index_python.packages import get_package_prefix
        path = os.path.join(get_package_prefix(PACKAGE), 'lib', PACKAGE, name)
        tried.append(path)
        if os.access(path, os.X_OK):
            return path
    except (ImportError, LookupError, EnvironmentError):   # no index, or not registered in it
        pass
    path = os.path.join(os.path.dirname(sys.executable), name)
    tried.append(path)
    if os.access(path, os.X_OK):
        return path
    found = shutil.which(name)
    if found:
        return found
    raise FileNotFoundError('%s: not found (tried %s and PATH)' % (name, ', '.join(tried)))
