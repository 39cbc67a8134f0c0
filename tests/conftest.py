"""Shared test fixtures: paths to the reference fixtures and tiny datasets."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get('QA_CLIMS_FIXTURES', REPO.parent / 'shared' / 'fixtures'))
REF = FIXTURES / 'reference'
VOC_MINI = REF / 'voc_mini'


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
    return make_reference_weights('clims_state_dict.json',
                                  tmp_path_factory.mktemp('weights') / 'res50_qa_clims.pth')


@pytest.fixture(scope='session')
def demo_voc(tmp_path_factory):
    """A small synthetic VOC folder made by the product's own generator (with SBD masks)."""
    from tools.make_demo_voc import generate_demo_voc
    return generate_demo_voc(str(tmp_path_factory.mktemp('demo') / 'VOC2012'), n_images=12,
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


def pytest_configure(config):
    if not REF.is_dir():
        raise pytest.UsageError('reference fixtures not found at %s: run the tests from a '
                                'checkout next to shared/fixtures or set QA_CLIMS_FIXTURES'
                                % FIXTURES)


@pytest.fixture(scope='session')
def irn_reference_weights(tmp_path_factory):
    """res50_irn.pth-layout weights of the fixtures (1056 keys, aliases and derived buffers)."""
    return make_reference_weights('irn_state_dict.json',
                                  tmp_path_factory.mktemp('weights') / 'res50_irn.pth')
