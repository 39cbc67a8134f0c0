"""docs/: the worked dataset and backbone examples of extending.md run as
written; every citation of a docs page (and section) resolves; nothing cites files outside
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
import pytest
import torch
from torch import nn

from conftest import REPO
from data import registry
from misc.io import load_json, load_npz, read_label_png
from net import registry as net_registry
import net
from net.backbone import CamBackbone
from net.checkpoint import load_backbone, save_weights
import run_sample

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


def registered_example_backbone(tmp_path, monkeypatch):
    """The CamNetwork of extending.md's backbone example, its module written under
    net/ (in tmp_path) and its entry added to CAM_NETWORKS as the guide says."""
    blocks = named_python_blocks(DOCS / 'extending.md')
    module_block = next(name for name in blocks if name.startswith('net/') and
                        not name.startswith('net/registry.py'))
    (tmp_path / 'net').mkdir()
    (tmp_path / module_block).write_text(blocks[module_block])
    module = 'net.' + Path(module_block).stem
    monkeypatch.setattr(net, '__path__', list(net.__path__) + [str(tmp_path / 'net')])
    monkeypatch.delitem(sys.modules, module, raising=False)
    namespace = dict(vars(net_registry))
    exec(blocks['net/registry.py: entry'], namespace)
    added = [value for name, value in namespace.items()
             if name not in vars(net_registry) and isinstance(value, net_registry.CamNetwork)]
    assert len(added) == 1
    monkeypatch.setitem(net_registry.CAM_NETWORKS, added[0].name, added[0])
    return added[0]


def test_worked_backbone_example_runs_as_written(tmp_path, monkeypatch):
    entry = registered_example_backbone(tmp_path, monkeypatch)
    backbone = entry.backbone()
    assert issubclass(backbone, CamBackbone) and backbone.stage_channels is not None
    args = run_sample.build_parser().parse_args(
        ['--cam_network', entry.name, '--feature_dim', str(backbone.feature_dim)])
    run_sample.resolve_args(args)
    assert net_registry.cam_network(args.cam_network) is entry

    n_classes, size = 3, (3 * backbone.stride, 4 * backbone.stride)
    images = torch.rand(2, 3, *size)
    baseline = entry.baseline(n_classes)
    assert baseline(images).shape == (2, n_classes)
    assert all(key.startswith((entry.name + '.', 'classifier.')) for key in baseline.state_dict())
    assert baseline.classifier.weight.shape == (n_classes, backbone.feature_dim, 1, 1)
    stem = {id(p) for p in baseline.backbone.stem_parameters()}
    frozen = [name for name, p in baseline.named_parameters() if not p.requires_grad]
    assert frozen and frozen == [name for name, p in baseline.named_parameters() if id(p) in stem]
    with torch.no_grad():
        cams = entry.cam(n_classes).eval()(images)
    assert cams.shape == (n_classes, size[0] // backbone.stride, size[1] // backbone.stride)

    checkpoint = str(tmp_path / 'cam.safetensors')
    save_weights(baseline, checkpoint)
    irnet = entry.irnet().eval()
    load_backbone(irnet.backbone, checkpoint, entry.name + '.')
    for key, value in baseline.backbone.state_dict().items():
        torch.testing.assert_close(irnet.backbone.state_dict()[key], value, rtol=0, atol=0)
    with torch.no_grad():
        edge, displacement = irnet(images)
    assert edge.shape == (2, 1, size[0] // 4, size[1] // 4)
    assert displacement.shape == (2, 2, size[0] // 4, size[1] // 4)


def test_the_backbone_example_loads_imagenet_weights_and_names_a_bad_file(tmp_path,
                                                                          monkeypatch):
    backbone = registered_example_backbone(tmp_path, monkeypatch).build_backbone(nn.BatchNorm2d)
    trained = type(backbone)(nn.BatchNorm2d).state_dict()
    weights = tmp_path / 'imagenet.pth'
    torch.save(trained, weights)
    backbone.load_imagenet_weights(str(weights))
    for key, value in backbone.state_dict().items():
        torch.testing.assert_close(value, trained[key], rtol=0, atol=0)
    torch.save({'not_a_layer.weight': torch.zeros(1)}, weights)
    with pytest.raises(ValueError, match=re.escape(str(weights))):
        backbone.load_imagenet_weights(str(weights))
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / 'missing.pth'))):
        backbone.load_imagenet_weights(str(tmp_path / 'missing.pth'))


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
