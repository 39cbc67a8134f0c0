"""docs/: the worked dataset example of extending.md runs as written; every
citation of a docs page (and section) resolves; nothing cites files outside
the repository."""
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import MappingProxyType

import numpy as np

import run_sample
from conftest import REPO
from data import registry
from misc.io import load_json, load_npz, read_label_png

DOCS = REPO / 'docs'
TEXT_SUFFIXES = ('.py', '.md', '.sh', '.txt', '.ini', '.cfg', '.toml')
OUTPUT_DIRS = re.compile(r'^(\..*|__pycache__|demo_out|work_space.*)$')
CITATION = re.compile(r'docs/([\w-]+\.md)(?:#([\w-]+))?')
MARKDOWN_LINK = re.compile(r'\]\(([^)#\s]*)(?:#([\w-]+))?\)')
OUTSIDE_FILES = ('METHOD.md', 'SEED.md')
OUTSIDE_FOLDER = re.compile(r'\.\./shared|shared/fixtures')
FIXTURE_LOOKUP_FILES = {'tests/conftest.py', 'tests/test_fixture_location.py',
                        'tests/fixtures/README.md', 'docs/README.md'}


def fenced_blocks(text):
    """(language, code) of every fenced code block of a markdown text."""
    return re.findall(r'^```(\w*)\n(.*?)^```', text, flags=re.S | re.M)


def named_python_blocks(path):
    """{name: code} of the python blocks whose first line is a ``# name`` comment."""
    blocks = {}
    for language, code in fenced_blocks(path.read_text()):
        first, _, rest = code.partition('\n')
        if language == 'python' and first.startswith('# '):
            blocks[first[2:]] = rest
    return blocks


def shell_commands(path):
    """argv of every command of the bash blocks (line continuations joined)."""
    commands = []
    for language, code in fenced_blocks(path.read_text()):
        if language == 'bash':
            commands += [shlex.split(line) for line in code.replace('\\\n', ' ').splitlines()
                         if line.strip()]
    return commands


def github_anchor(heading):
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces -> '-'."""
    return re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')


def anchors(markdown_path):
    """Anchors of the headings of a markdown file (code blocks left out)."""
    text = re.sub(r'^```.*?^```', '', markdown_path.read_text(), flags=re.S | re.M)
    return {github_anchor(h) for h in re.findall(r'^#{1,6} (.+)$', text, flags=re.M)}


def repository_text_files():
    """Every text file of the checkout (outputs, caches and hidden folders left out)."""
    for folder, subfolders, files in os.walk(REPO):
        subfolders[:] = [d for d in subfolders if not OUTPUT_DIRS.match(d)]
        for name in files:
            if name.endswith(TEXT_SUFFIXES):
                path = os.path.join(folder, name)
                yield os.path.relpath(path, REPO).replace(os.sep, '/'), path


def test_worked_dataset_example_runs_as_written(tmp_path, monkeypatch):
    guide = DOCS / 'extending.md'
    blocks = named_python_blocks(guide)
    (tmp_path / 'streets').mkdir()
    (tmp_path / 'streets' / '__init__.py').write_text('')
    (tmp_path / 'streets' / 'dataset.py').write_text(blocks['streets/dataset.py'])
    (tmp_path / 'make_streets.py').write_text(blocks['make_streets.py'])
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, 'streets', raising=False)
    monkeypatch.delitem(sys.modules, 'streets.dataset', raising=False)
    namespace = dict(vars(registry))
    exec(blocks['data/registry.py: builder'], namespace)
    exec('added = {\n%s\n}' % blocks['data/registry.py: entry in DATASETS'], namespace)
    datasets = MappingProxyType({**registry.DATASETS, **namespace['added']})
    monkeypatch.setattr(registry, 'DATASETS', datasets)
    monkeypatch.setattr(run_sample, 'DATASETS', datasets)
    monkeypatch.chdir(tmp_path)

    commands = shell_commands(guide)
    assert [argv[:2] for argv in commands] == [['python', 'make_streets.py'],
                                               ['python', 'run_sample.py']]
    subprocess.run([sys.executable] + commands[0][1:], check=True)
    run_sample.main(commands[1][2:])

    args = run_sample.build_parser().parse_args(commands[1][2:])
    from streets.dataset import Streets
    source = Streets(args.data_root)
    ids = (tmp_path / args.data_root / 'train.txt').read_text().split()
    ws = tmp_path / args.work_space
    for image_id in ids:
        mask = read_label_png(str(tmp_path / args.data_root / 'masks' / (image_id + '.png')))
        tagged = [int(i) - 1 for i in np.unique(mask) if i not in (0, 255)]
        cams = load_npz(str(ws / 'cams' / (image_id + '.npz')))
        assert cams['keys'].tolist() == tagged
        assert cams['high_res'].shape == (len(tagged),) + mask.shape
        assert np.isfinite(cams['high_res']).all() and cams['high_res'].max() <= 1
    result = load_json(str(ws / 'eval_cam.json'))
    assert result['dataset'] == 'streets' and result['n_images'] == len(ids)
    assert list(result['iou_by_class']) == ['background'] + list(source.class_names)
    filled = json.loads((ws / 'run_args.json').read_text())
    defaults = namespace['added']['streets'].defaults
    assert {flag: filled[flag] for flag in defaults} == dict(defaults)


def test_citations_of_docs_pages_and_sections_resolve():
    broken = []
    for name, path in repository_text_files():
        text = open(path, encoding='utf-8').read()
        targets = [(DOCS / page, anchor) for page, anchor in CITATION.findall(text)]
        if name.endswith('.md'):
            here = Path(path)
            targets += [((here.parent / link).resolve() if link else here, anchor)
                        for link, anchor in MARKDOWN_LINK.findall(text)
                        if '://' not in link and (not link or link.endswith('.md'))]
        broken += ['%s -> %s#%s' % (name, page, anchor) for page, anchor in targets
                   if not page.is_file() or (anchor and anchor not in anchors(page))]
    assert broken == []


def test_nothing_cites_files_outside_the_repository():
    offending = []
    for name, path in repository_text_files():
        if name == 'tests/test_docs.py':
            continue
        text = open(path, encoding='utf-8').read()
        offending += ['%s: %s' % (name, f) for f in OUTSIDE_FILES if f in text]
        if OUTSIDE_FOLDER.search(text) and name not in FIXTURE_LOOKUP_FILES:
            offending.append('%s: %s' % (name, OUTSIDE_FOLDER.search(text).group()))
    assert offending == []


def test_the_docs_index_links_every_page():
    index = (DOCS / 'README.md').read_text()
    pages = sorted(p.name for p in DOCS.glob('*.md') if p.name != 'README.md')
    assert pages and [p for p in pages if '](%s)' % p not in index] == []
