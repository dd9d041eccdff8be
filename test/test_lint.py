"""The code follows the ament linters' rules (flake8 with ament's config, pep257)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = ['streamdeq_ros', 'test', 'setup.py', 'scripts', 'launch', 'bench']
# ament_pep257's default ignore list.
PEP257_IGNORE = 'D100,D101,D102,D103,D104,D105,D106,D107,D203,D212,D404'


def _run(args):
    targets = [t for t in TARGETS if os.path.exists(os.path.join(ROOT, t))]
    return subprocess.run([sys.executable, '-m'] + args + targets, cwd=ROOT,
                          capture_output=True, text=True)


def test_flake8():
    out = _run(['flake8'])
    assert out.returncode == 0, out.stdout + out.stderr


def test_pep257():
    out = _run(['pydocstyle', '--convention=pep257', '--add-ignore=' + PEP257_IGNORE,
                '--match=.*\\.py'])
    assert out.returncode == 0, out.stdout + out.stderr
