"""Shared test fixtures: paths to the reference fixtures and tiny datasets."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES_ENV = 'QA_CLIMS_FIXTURES'


def locate_fixtures(repo=REPO):
    """The reference fixture folder (one holding ``reference/``) the tests read.

    In this order: ``$QA_CLIMS_FIXTURES`` when it is set (then nothing else is
    tried); ``../shared/fixtures`` beside the clone, the project workspace's
    canonical set (possibly another set of the same format), when it exists;
    ``tests/fixtures``, the copy in the repository. A FileNotFoundError names
    all three when none holds a set (docs/README.md#reference-fixtures).
    """
    override = os.environ.get(FIXTURES_ENV)
    beside = repo.parent / 'shared' / 'fixtures'
    in_repo = repo / 'tests' / 'fixtures'
    for folder in [Path(override)] if override else [beside, in_repo]:
        if (folder / 'reference').is_dir():
            return folder
    if override:
        raise FileNotFoundError('%s=%s holds no reference/ folder; when set, it is the only place '
                                'the tests look (unset, they use %s, ../shared/fixtures beside '
                                'the clone, if it exists, else %s, tests/fixtures): unset it or '
                                'point it at a fixture folder'
                                % (FIXTURES_ENV, override, beside, in_repo))
    raise FileNotFoundError('no reference fixtures: %s is not set and neither %s (../shared/'
                            'fixtures beside the clone) nor %s (tests/fixtures) holds a '
                            'reference/ folder: restore tests/fixtures (git checkout -- '
                            'tests/fixtures) or set %s' % (FIXTURES_ENV, beside, in_repo,
                                                           FIXTURES_ENV))


FIXTURES = locate_fixtures()
REF = FIXTURES / 'reference'
VOC_MINI = REF / 'voc_mini'
SESSION_DIR_PREFIX = 'session_'


@pytest.fixture(scope='module', autouse=True)
def remove_module_temp_dirs(tmp_path_factory):
    """Delete the folders a test module made with ``tmp_path_factory`` when it ends.

    The suite writes several GB of network weights; with pytest.ini's retention
    policy (a passed test's ``tmp_path`` is removed at once) this keeps the peak
    disk use to one module's files, so the suite fits a CI machine's small disk.
    Session fixtures name their folders ``session_*`` and are kept.
    """
    base = tmp_path_factory.getbasetemp()
    before = set(base.iterdir())
    yield
    for path in set(base.iterdir()) - before:
        if not path.name.startswith(SESSION_DIR_PREFIX):
            shutil.rmtree(path, ignore_errors=True)


def reference_ids(split):
    """Image names of a split of the fixture set (its voc12/<split>.txt)."""
    return (REF / 'voc12' / (split + '.txt')).read_text().split()


def make_reference_weights(layout_name, out_path):
    """Write deterministic weights in the authors' checkpoint layout (fixtures' tool).

    Salt and rule are the fixture set's own (layouts/checksums.json).
    """
    recipe = json.loads((REF / 'layouts' / 'checksums.json').read_text())
    recipe = recipe[Path(layout_name).stem]
    subprocess.run([sys.executable, str(FIXTURES / 'tools' / 'make_weights.py'),
                    '--layout', str(REF / 'layouts' / layout_name), '--out', str(out_path),
                    '--salt', recipe['salt'], '--rule', recipe['rule']],
                   check=True, cwd=str(REF))
    return out_path


@pytest.fixture(scope='session')
def clims_reference_weights(tmp_path_factory):
    """res50_qa_clims.pth-layout weights of the fixtures (956 aliased keys)."""
    folder = tmp_path_factory.mktemp(SESSION_DIR_PREFIX + 'weights')
    return make_reference_weights('clims_state_dict.json', folder / 'res50_qa_clims.pth')


@pytest.fixture(scope='session')
def demo_voc(tmp_path_factory):
    """A small synthetic VOC folder made by the product's own generator (with SBD masks)."""
    from tools.make_demo_voc import generate_demo_voc
    folder = tmp_path_factory.mktemp(SESSION_DIR_PREFIX + 'demo')
    return generate_demo_voc(str(folder / 'VOC2012'), n_images=12,
                             seed=3, with_aug=True, min_side=64, max_side=96)


def kill_when(cmd, ready, timeout=300):
    """Start ``cmd`` and SIGKILL it as soon as ``ready()`` holds (or it ends, or time is up)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def dead_pid():
    """The id of a process that has ended (a child that was started and reaped)."""
    proc = subprocess.Popen([sys.executable, '-c', ''])
    proc.wait()
    return proc.pid


def has_file_ending(folder, suffix):
    return folder.is_dir() and any(n.endswith(suffix) for n in os.listdir(folder))


def run_sample_cmd(*args):
    return [sys.executable, str(REPO / 'run_sample.py')] + [str(a) for a in args]


@pytest.fixture(scope='session')
def irn_reference_weights(tmp_path_factory):
    """res50_irn.pth-layout weights of the fixtures (1056 keys, aliases and derived buffers)."""
    folder = tmp_path_factory.mktemp(SESSION_DIR_PREFIX + 'weights')
    return make_reference_weights('irn_state_dict.json', folder / 'res50_irn.pth')
