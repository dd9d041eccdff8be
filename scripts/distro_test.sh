#!/usr/bin/env bash
# The distro suite: build and test the package as a ROS 2 user does, in the distro-like
# install of ../shared/ros2_distro (ros2 CLI, launch_testing, real cv_bridge, sensor_msgs_py,
# official vision_msgs, colcon):
#   colcon build --packages-select streamdeq_ros && colcon test && colcon test-result --verbose
# in a workspace whose src/ links to this checkout. Fails on any failed test, and when fewer
# than 100 tests ran (a silently empty colcon test).
# STREAMDEQ_DISTRO_WS moves the workspace (default /tmp/streamdeq_distro_ws); ROS2_DISTRO_PREFIX
# the distro install (default /opt/ros2_distro).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${ROS2_DISTRO_PREFIX:-/opt/ros2_distro}"
WS="${STREAMDEQ_DISTRO_WS:-/tmp/streamdeq_distro_ws}"

bash "$ROOT/../shared/ros2_distro/setup.sh" "$PREFIX"
set +u; source "$PREFIX/env.sh"; set -u
# what README "On a ROS 2 distro" has a user pip-install beyond torch: the onnxruntime backend
python -m pip install -q --disable-pip-version-check 'onnx>=1.16' 'onnxruntime>=1.18' 'rosbags>=0.10'
rm -rf "$WS"; mkdir -p "$WS/src"; ln -s "$ROOT" "$WS/src/streamdeq_ros"
cd "$WS"
colcon build --packages-select streamdeq_ros
set +u; source install/setup.bash; set -u
colcon test --packages-select streamdeq_ros --pytest-args -q || true   # judged below
ros2 daemon stop >/dev/null 2>&1 || true     # started by the ros2 CLI tests
colcon test-result --verbose
total=$(colcon test-result --all | sed -n 's/^Summary: \([0-9]*\) tests.*/\1/p')
echo "distro suite: ${total:-0} tests"
if (( ${total:-0} < 100 )); then
  echo "distro suite: fewer than 100 tests ran" >&2
  exit 1
fi
