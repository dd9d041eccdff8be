"""The documentation matches the code.

Commands and options exist, links resolve, every page is reachable from the README.
"""
import argparse
import glob
import os
import re

from streamdeq_ros.tools.cli import build_parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(ROOT, 'README.md'), os.path.join(ROOT, 'CHANGELOG.md')] + sorted(
    glob.glob(os.path.join(ROOT, 'docs', '*.md')))


def _subcommands(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def _stale_commands(text: str):
    """Return the ``streamdeq ...`` uses in ``text`` naming a command or option that is not."""
    top = _subcommands(build_parser())
    text = text.replace('\\\n', ' ')                  # shell continuations
    bad = []
    for m in re.finditer(r'streamdeq ((?:bench )?[a-z][a-z-]*)([^`\n|]*)', text):
        words = m.group(1).split()
        if words[0] not in top:
            continue                                   # prose: "streamdeq models", ...
        parser = top[words[0]]
        if len(words) > 1:
            if words[1] not in _subcommands(parser):
                bad.append(m.group(0))
                continue
            parser = _subcommands(parser)[words[1]]
        known = {o for a in parser._actions for o in a.option_strings}
        used = set(re.findall(r'(?<![\w-])(--[a-z][a-z0-9-]*)', m.group(2)))
        if used - known:
            bad.append('%s (%s)' % (m.group(0).strip(), ', '.join(sorted(used - known))))
    return bad


def test_the_checker_catches_a_stale_command():
    assert _stale_commands('run `streamdeq eval --model A=b --no-such-option`') == [
        'streamdeq eval --model A=b --no-such-option (--no-such-option)']
    assert _stale_commands('`streamdeq bench nothing --x`') == ['streamdeq bench nothing --x']
    assert _stale_commands('`streamdeq bench solver --cost --sizes 64x128`') == []


def test_every_documented_command_and_option_exists():
    bad = {os.path.relpath(p, ROOT): _stale_commands(open(p).read()) for p in PAGES}
    assert {k: v for k, v in bad.items() if v} == {}


def test_every_link_resolves_and_every_page_is_reachable_from_the_readme():
    broken = []
    for page in PAGES:
        for target in re.findall(r'\]\(([^)#\s]+)(?:#[^)]*)?\)', open(page).read()):
            if '://' not in target and not os.path.exists(
                    os.path.join(os.path.dirname(page), target)):
                broken.append('%s -> %s' % (os.path.relpath(page, ROOT), target))
    assert broken == []
    readme = open(PAGES[0]).read()
    for page in PAGES[1:]:
        assert '](%s)' % os.path.relpath(page, ROOT) in readme, page


def test_the_readme_names_every_command():
    readme = open(PAGES[0]).read()
    top = _subcommands(build_parser())
    names = ['streamdeq %s' % n for n in top if n != 'bench']
    names += ['streamdeq bench %s' % n for n in _subcommands(top['bench'])]
    assert [n for n in names if '`%s`' % n not in readme] == []
