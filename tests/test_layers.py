"""Imports point one way (docs/extending.md#layers): every module imports only from its own
layer or the layers below it, read from the source of every .py file of the repository."""
import ast

import pytest

from conftest import REPO

# Lowest first. A top-level module or package not listed here is refused, so a new
# package has to take its place in the diagram.
LAYERS = (
    ('misc',),                                   # general utilities
    ('data', 'voc12', 'coco14', 'net'),          # datasets and networks
    ('wsss', 'vqa'),                             # WSSS algorithms
    ('pipeline',),                               # stage setup, artefact paths, provenance, engine
    ('step',),                                   # one module per stage
    ('run_sample', 'run_demo', 'tools', 'bench'),  # entry points
)
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}
# Datasets and networks stand side by side and do not know each other.
APART = ({'data', 'voc12', 'coco14'}, {'net'})
OUTSIDE = ('tests', '.venv', '.git', 'demo_out')


def imported_modules(source):
    """The absolute module names a source's import statements name (at any depth, lazy
    imports included; ``from a.b import c`` names ``a.b``)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def owner(relative_path):
    """The layer name a file belongs to: its top folder, or its module name at the top."""
    parts = relative_path.split('/')
    return parts[0] if len(parts) > 1 else parts[0][:-len('.py')]


def violations(relative_path, source):
    """'<file>: imports <module> (<layer> is above <own layer>)' for each wrong import."""
    own = owner(relative_path)
    if own not in LEVEL:
        return ['%s: %s is in no layer of tests/test_layers.py' % (relative_path, own)]
    found = set()
    for name in imported_modules(source):
        top = name.split('.')[0]
        if top not in LEVEL or top == own:
            continue
        if LEVEL[top] > LEVEL[own]:
            found.add('%s: imports %s (%s is above %s)' % (relative_path, name, top, own))
        elif any(own in group for group in APART) and not any(
                {own, top} <= group for group in APART) and LEVEL[top] == LEVEL[own]:
            found.add('%s: imports %s (datasets and networks do not import each other)'
                      % (relative_path, name))
    return sorted(found)


def repository_sources():
    for path in sorted(REPO.rglob('*.py')):
        relative = path.relative_to(REPO).as_posix()
        if not relative.startswith(OUTSIDE):
            yield relative, path.read_text()


def test_imports_point_down_the_layers():
    sources = list(repository_sources())
    assert {owner(relative) for relative, _ in sources} == set(LEVEL)
    found = [v for relative, source in sources for v in violations(relative, source)]
    assert found == []


@pytest.mark.parametrize('relative_path, source, expected', [
    ('net/deeplab.py', 'from pipeline.paths import in_work_space\n',
     ['net/deeplab.py: imports pipeline.paths (pipeline is above net)']),
    ('data/loaders.py', 'def f():\n    from wsss.path_index import PathIndex\n',
     ['data/loaders.py: imports wsss.path_index (wsss is above data)']),
    ('misc/io.py', 'import data\n', ['misc/io.py: imports data (data is above misc)']),
    ('voc12/devkit.py', 'from net import registry\n',
     ['voc12/devkit.py: imports net (datasets and networks do not import each other)']),
    ('wsss/cam.py', 'from misc.io import load_npz\nfrom net.registry import cam_network\n', []),
    ('step/make_cam.py', 'import run_sample\n',
     ['step/make_cam.py: imports run_sample (run_sample is above step)']),
    ('newpkg/x.py', 'import misc\n', ['newpkg/x.py: newpkg is in no layer of tests/test_layers.py']),
])
def test_the_check_names_each_upward_import(relative_path, source, expected):
    assert violations(relative_path, source) == expected
