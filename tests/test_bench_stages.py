"""bench/bench_stages.py --quick: every stage has a row, the units are the VOC recipe's and
the projected wall time is the sum of time per unit x units, checked on the printed
numbers."""
import os
import re
import subprocess
import sys

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Units of each stage in the VOC recipe (docs/recipe.md): train_aug 10,582 images, train
# 1,464, val 1,449; train_cam 5 epochs of 16, train_qa_clims 15 of 8, train_irn 3 of 32
# (incomplete batches dropped), train_seg 30,000 iterations.
VOC_UNITS = {
    'vqa': ('image', 10582, 'flows'),
    'text caches': ('image', 10582, 'flows'),
    'train_cam step': ('iteration', 10582 // 16 * 5, 'baseline'),
    'make_cam fp32': ('image', 10582, 'baseline'),
    'make_cam bf16': ('image', 10582, 'variant'),
    'train_qa_clims step': ('iteration', 10582 // 8 * 15, 'flows'),
    'make_clims fp32': ('image', 10582, 'flows'),
    'make_clims bf16': ('image', 10582, 'variant'),
    'eval_cam': ('image', 1464, 'flows'),
    'cam_to_ir_label 1 worker': ('image', 10582, 'variant'),
    'cam_to_ir_label 2 workers': ('image', 10582, 'flows'),
    'train_irn step': ('iteration', 10582 // 32 * 3, 'flows'),
    'make_sem_seg': ('image', 10582, 'flows'),
    'eval_sem_seg': ('image', 1464, 'flows'),
    'train_seg step': ('iteration', 30000, 'flows'),
    'eval_seg without CRF': ('image', 1449, 'variant'),
    'eval_seg with CRF': ('image', 1449, 'flows'),
}
ROW = re.compile(r'^\| (?P<stage>[^|]+) \| cpu \| (?P<s>[0-9.e+-]+) per (?P<unit>\w+) \| '
                 r'(?P<runs>\d+) \| \d+ \| (?P<rss>\d+) \| - \| (?P<count>\d+) \| (?P<proj>[0-9.]+) \| '
                 r'(?P<group>\w+) \|')
TOTAL = re.compile(r'^projected VOC recipe on cpu: flows (?P<flows>[0-9.]+) s = (?P<flows_h>'
                   r'[0-9.]+) h = [0-9.]+ days; with the baseline \(train_cam, make_cam\) '
                   r'(?P<all>[0-9.]+) s = [0-9.]+ h')


@pytest.fixture(scope='module')
def quick_output():
    env = dict(os.environ, OMP_NUM_THREADS='1')
    done = subprocess.run([sys.executable, os.path.join(REPO, 'bench', 'bench_stages.py'),
                           '--quick', '--threads', '1', '--devices', 'cpu'],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def parsed_rows(output):
    return {m['stage']: m for m in map(ROW.match, output.splitlines()) if m}


def test_every_stage_has_a_row_with_the_recipe_units(quick_output):
    rows = parsed_rows(quick_output)
    assert sorted(rows) == sorted(VOC_UNITS)
    for stage, (unit, count, group) in VOC_UNITS.items():
        row = rows[stage]
        assert (row['unit'], int(row['count']), row['group']) == (unit, count, group), stage
        assert float(row['s']) > 0 and int(row['rss']) > 0, stage


def test_projection_is_the_sum_of_time_per_unit_times_units(quick_output):
    rows = parsed_rows(quick_output)
    for stage, row in rows.items():
        assert float(row['proj']) == pytest.approx(float(row['s']) * int(row['count']),
                                                   abs=0.051), stage
    totals = [m for m in map(TOTAL.match, quick_output.splitlines()) if m]
    assert len(totals) == 1
    flows = sum(float(r['proj']) for r in rows.values() if r['group'] == 'flows')
    baseline = sum(float(r['proj']) for r in rows.values() if r['group'] == 'baseline')
    assert float(totals[0]['flows']) == pytest.approx(flows, abs=0.051 * len(rows))
    assert float(totals[0]['all']) == pytest.approx(flows + baseline, abs=0.051 * len(rows))
    assert float(totals[0]['flows_h']) == pytest.approx(flows / 3600, abs=0.051)


def test_machine_and_run_are_named(quick_output):
    machine = next(line for line in quick_output.splitlines() if line.startswith('Machine: '))
    assert 'torch %s' % torch.__version__ in machine
    assert re.search(r'\d+ cores, \d+ GB RAM', machine)
    assert 'bf16 instructions: ' in machine and 'oneDNN bf16 kernels: ' in machine
    assert 'QUICK (tiny sizes, not a measurement)' in quick_output
    assert re.search(r'load average [0-9.]+ before', quick_output)
