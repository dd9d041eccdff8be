#!/usr/bin/env bash
# One command from a bare Debian 12 machine to a ready .venv:
#   torch + torchvision, the ROS 2 kilted wheels (rclpy over Fast DDS), the test-support
#   vision_msgs interface package built from test/ros_support, and streamdeq_ros (editable).
# Idempotent: a re-run whose inputs did not change returns in about a second.
# Set STREAMDEQ_VENV to put the environment somewhere else.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${STREAMDEQ_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
STAMP="$VENV/.streamdeq-setup"

inputs_hash() {
  (cd "$ROOT" && cat scripts/setup_env.sh scripts/build_vision_msgs.py requirements.txt \
     requirements-ros.txt setup.py setup.cfg package.xml \
     test/ros_support/vision_msgs/CMakeLists.txt test/ros_support/vision_msgs/package.xml \
     test/ros_support/vision_msgs/msg/*.msg | sha256sum | cut -d' ' -f1)
}

HASH="$(inputs_hash)"
if [[ -x "$PY" && -f "$STAMP" && "$(cat "$STAMP")" == "$HASH" ]]; then
  echo "setup: $VENV is up to date"
  exit 0
fi

# Debian build tools for the interface package.
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v g++ >/dev/null || missing+=(g++)
command -v ninja >/dev/null || missing+=(ninja-build)
if (( ${#missing[@]} )); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages: ${missing[*]} (install them, or run as root)" >&2
    exit 1
  fi
  echo "setup: apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [[ ! -x "$PY" ]]; then
  echo "setup: creating $VENV"
  python3 -m venv "$VENV"
fi
PIP=("$PY" -m pip install --quiet --disable-pip-version-check)
echo "setup: pip install (torch comes from local disk; the first run takes a few minutes)"
"${PIP[@]}" -r "$ROOT/requirements.txt" -r "$ROOT/requirements-ros.txt" 2>&1 \
  | grep -v "is ignored: it is neither a file nor a directory" || true
"$PY" -c "import torch, torchvision, rclpy, catkin_pkg" \
  || { echo "setup: pip install failed" >&2; exit 1; }

echo "setup: building the test-support vision_msgs interface package"
"$PY" "$ROOT/scripts/build_vision_msgs.py"

"${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT" 2>&1 \
  | grep -v "is ignored: it is neither a file nor a directory" || true
"$PY" -c "import streamdeq_ros, vision_msgs.msg" \
  || { echo "setup: final import check failed" >&2; exit 1; }

echo "$HASH" > "$STAMP"
echo "setup: done ($VENV)"
