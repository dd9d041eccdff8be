"""The tools refuse bad input in one sentence before they spend anything, and lose nothing."""
import os
import subprocess
import sys

import pytest

from streamdeq_ros.models.official import random_official
from streamdeq_ros.tools.cli import main as cli


def _run(*args, timeout=180):
    out = subprocess.run([sys.executable, '-m', 'streamdeq_ros.tools.cli'] + list(args),
                         capture_output=True, text=True, timeout=timeout)
    return out.returncode, out.stdout + out.stderr


@pytest.mark.parametrize('args, sentence', [
    (['--config', 'nope'], "--config: unknown MDEQ config 'nope'"),
    (['--cost', '--config', 'tiny', '--repeats', '0'], '--repeats must be at least 1'),
    (['--cost', '--config', 'tiny', '--sizes', '64x100'], 'in positive multiples of 32'),
    (['--cost', '--config', 'tiny', '--device', 'mps'], 'cpu, cuda or cuda:N'),
    (['--cost', '--config', 'tiny', '--json', '/nonexistent/x.json'], 'folder does not exist'),
    (['--cost', '--config', 'tiny', '--cost-iters', '1'], 'at least 2'),
])
def test_bench_solver_refuses_in_one_sentence(args, sentence):
    with pytest.raises(SystemExit, match=sentence.replace('(', r'\(')):
        cli(['bench', 'solver'] + args)


@pytest.mark.parametrize('args, sentence', [
    (['--solver', 'nope'], "--solver takes unroll, broyden or ''"),
    (['--input-size', '100', '100'], '--input-size takes H W in positive multiples of 32'),
    (['--sizes', '0x0'], '--sizes takes camera WxH'),
    (['--subscribe', 'class,bogus'], "--subscribe takes 'class' and 'all', got 'bogus'"),
    (['--checkpoint', '/nope.pt'], "checkpoint '/nope.pt' does not exist"),
])
def test_bench_node_refuses_before_starting_anything(args, sentence):
    code, text = _run('bench', 'node', *args, '--frames', '1', '--warmup', '0')
    assert code in (1, 2) and sentence in text and 'Traceback' not in text, text


def test_bench_node_says_why_the_node_exited():
    """A value the node refuses ends the bench at once with the node's own sentence."""
    code, text = _run('bench', 'node', '--iters', '0', '--sizes', '64x48', '--subscribe',
                      'class', '--frames', '1', '--warmup', '0', '--out', os.devnull)
    assert code == 1 and 'Traceback' not in text, text
    assert 'streamdeq_node exited with code 2' in text and 'iters must be' in text, text


def test_import_official_never_empties_a_folder_it_did_not_write(tmp_path):
    keep = tmp_path / 'models'
    keep.mkdir()
    (keep / 'notes.txt').write_text('mine')
    assert cli(['import-official', '--random-weights', '--out', str(keep)]) == 1
    assert (keep / 'notes.txt').read_text() == 'mine' and sorted(os.listdir(keep)) == [
        'notes.txt']
    afile = tmp_path / 'afile'
    afile.write_text('x')
    assert cli(['import-official', '--random-weights', '--out', str(afile)]) == 1
    assert afile.read_text() == 'x'
    folder = str(tmp_path / 'm')
    random_official('small', folder)
    random_official('small', folder, seed=1)        # a model folder is replaced whole
    assert sorted(os.listdir(folder)) == ['model.pt', 'model_card.json']
    code, text = _run('import-official', os.path.join(folder, 'model.pt'), '--out',
                      str(tmp_path / 'again'))
    assert code == 1 and 'is already a streamdeq_ros checkpoint' in text, text
