"""The shell flows against the recipe table (docs/recipe.md), through DRY_RUN=1.

The table is the one place of the recipe. A row with a flag names the
run_sample.py stages and the datasets it applies to and the value ours must
have there. Every flow runs with DRY_RUN=1 (no stage executed, nothing
created; the flows only ask run_sample.py --print_defaults for their
settings); each printed run_sample.py command is parsed by run_sample.py, so
a value is the explicit flag, else run_sample.py's default.
"""
import os
import re
import shlex
import subprocess
import sys

import pytest

from conftest import REPO
from data.registry import dataset_entry
import run_sample

COLUMNS = ('stage', 'data', 'setting', 'flag', 'authors', 'source', 'ours', 'why')
DATA_NAMES = {'voc12': 'VOC', 'coco14': 'COCO'}
PYTHON = sys.executable                # a dry run runs it only for --print_defaults
FLOWS = {
    'run_voc12_qa_clims.sh': ['train_qa_clims', 'make_clims', 'eval_cam'],
    'run_voc12_sem_seg.sh': ['cam_to_ir_label', 'train_irn', 'make_sem_seg', 'eval_sem_seg'],
    'run_voc12_seg.sh': ['train_seg', 'eval_seg'],
    'run_coco14_qa_clims.sh': ['train_qa_clims', 'make_clims', 'eval_cam'],
    'run_coco14_sem_seg.sh': ['cam_to_ir_label', 'train_irn', 'make_sem_seg', 'eval_sem_seg'],
    'run_coco14_seg.sh': ['train_seg', 'eval_seg'],
}


def effective_args(argv):
    """run_sample.py's arguments for a command line: explicit flags, then what
    run_sample.py fills after parsing (per-dataset defaults, batch sizes)."""
    args = run_sample.build_parser().parse_args(argv)
    run_sample.resolve_args(args)
    return args


def recipe_rows():
    """The rows of the recipe table (docs/recipe.md) as dicts keyed by COLUMNS."""
    lines = [line for line in (REPO / 'docs' / 'recipe.md').read_text().splitlines()
             if line.startswith('|')]
    header = [cell.strip() for cell in lines[0].strip('|').split('|')]
    assert tuple(header) == COLUMNS
    rows = []
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip().strip('|').split('|')]
        assert len(cells) == len(COLUMNS), line
        rows.append(dict(zip(COLUMNS, cells)))
    return rows


def row_stages(row):
    """Stage names of a row; None for 'all'."""
    return None if row['stage'] == 'all' else set(re.findall(r'`(\w+)`', row['stage']))


def row_datasets(row):
    return {name for name, label in DATA_NAMES.items()
            if label in [part.strip() for part in row['data'].split(',')]}


def checked_rows():
    """(row, flag, value typed by run_sample.py's parser) of every row with a flag."""
    out = []
    for row in recipe_rows():
        if not row['flag']:
            continue
        flag = re.fullmatch(r'`(--\w+)`', row['flag']).group(1)
        value = re.fullmatch(r'`([^`]*)`', row['ours']).group(1)
        parsed = run_sample.build_parser().parse_args([flag, value])
        out.append((row, flag, getattr(parsed, flag[2:])))
    return out


def dry_run(tmp_path, script, **variables):
    """The printed commands of a flow run with DRY_RUN=1 in an empty folder."""
    env = {'PATH': os.environ.get('PATH', '/usr/bin:/bin'), 'DRY_RUN': '1', 'PYTHON': PYTHON,
           **variables}
    done = subprocess.run(['bash', str(REPO / script)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, check=True)
    return [shlex.split(line) for line in done.stdout.splitlines()]


def run_sample_argv(words):
    """The run_sample.py arguments of a printed command (None for another program)."""
    scripts = [i for i, w in enumerate(words) if w == str(REPO / 'run_sample.py')]
    return words[scripts[0] + 1:] if scripts else None


def stages_of(args):
    return [stage for stage in run_sample.STAGES if getattr(args, stage + '_pass')]


def flow_commands(tmp_path):
    """Effective run_sample.py arguments of every command of every flow."""
    commands = []
    for script in FLOWS:
        folder = tmp_path / script
        folder.mkdir()
        commands += [effective_args(argv) for argv in map(run_sample_argv, dry_run(folder, script))
                     if argv is not None]
    return commands


@pytest.mark.parametrize('script', sorted(FLOWS))
def test_dry_run_prints_every_command_and_runs_nothing(tmp_path, script):
    commands = dry_run(tmp_path, script, NGPU='2')
    assert os.listdir(tmp_path) == []
    for words in commands:
        assert words[0] == PYTHON
        program = next(w for w in words[1:] if w.endswith('.py'))
        assert program == str(REPO / 'run_sample.py') or \
            os.path.dirname(program) == str(REPO / 'tools'), words
    stages = [stages_of(effective_args(argv)) for argv in map(run_sample_argv, commands)
              if argv is not None]
    assert stages == [[stage] for stage in FLOWS[script]]
    for words in commands:
        argv = run_sample_argv(words)
        if argv is not None and stages_of(effective_args(argv))[0].startswith('train_'):
            assert words[1:5] == ['-m', 'torch.distributed.run', '--nproc_per_node', '2']


def test_flow_commands_have_the_recipe_values(tmp_path):
    commands = flow_commands(tmp_path)
    flow_stages = {(args.dataset, stage) for args in commands for stage in stages_of(args)}
    mismatches = []
    for row, flag, value in checked_rows():
        stages = row_stages(row)
        for dataset in row_datasets(row):
            targets = [args for args in commands if args.dataset == dataset and
                       (stages is None or stages & set(stages_of(args)))]
            for stage in sorted(stages or ()):
                if (dataset, stage) not in flow_stages:      # no flow runs it: the defaults
                    targets.append(effective_args(['--dataset', dataset,
                                                   '--%s_pass' % stage, 'True']))
            assert targets, (row, dataset)
            for args in targets:
                actual = getattr(args, flag[2:])
                if actual != value:
                    mismatches.append('%s %s %s: %r, table %r' % (
                        dataset, '+'.join(stages_of(args)), flag, actual, value))
    assert mismatches == []


def test_recipe_rows_are_well_formed_and_differences_say_why():
    rows = recipe_rows()
    stages = set(run_sample.STAGES)
    for row in rows:
        assert row_datasets(row), row
        if row['flag']:
            assert row_stages(row) is None or row_stages(row) <= stages, row
        if row['authors'] != row['ours']:
            assert row['why'], row
    assert any(row['authors'] != row['ours'] for row in rows)


@pytest.mark.parametrize('script, dataset', [('run_voc12_qa_clims.sh', 'voc12'),
                                             ('run_coco14_qa_clims.sh', 'coco14')])
def test_text_caches_are_made_once_with_the_training_clip(tmp_path, script, dataset):
    first = dry_run(tmp_path, script)
    tool = first[0]
    assert tool[1] == str(REPO / 'tools' / 'gen_text_feats_cache.py') and tool[2] == dataset
    training = effective_args(run_sample_argv(first[1]))
    assert tool[tool.index('--clip') + 1] == training.clip
    for flag in ('--vqa_fg_cache_file', '--vqa_bg_cache_file'):
        cache = tmp_path / tool[tool.index(flag) + 1]
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.touch()
    again = dry_run(tmp_path, script)
    assert [stages_of(effective_args(run_sample_argv(words))) for words in again] == \
        [['train_qa_clims'], ['make_clims'], ['eval_cam']]
    skipped = dry_run(tmp_path, script, SKIP_TRAIN='1')
    assert [stages_of(effective_args(run_sample_argv(words))) for words in skipped] == \
        [['make_clims'], ['eval_cam']]


def python_defaults_variables(script):
    """The VAR of each VAR=flag pair of a flow's python_defaults call."""
    text = (REPO / script).read_text().replace('\\\n', ' ')
    calls = re.findall(r'^python_defaults (.*)$', text, flags=re.M)
    return [pair.split('=', 1)[0] for call in calls for pair in call.split()]


# The only settings a flow defaults itself: where things are and how to run, and eval_seg's
# CRF, which the flow scores too (run_sample.py's --seg_crf default is False).
FLOW_OWN_SETTINGS = {'DATASET', 'VOC12_ROOT', 'MSCOCO_ROOT', 'WORK_SPACE', 'NGPU', 'NUM_WORKERS',
                     'PYTHON', 'SKIP_TRAIN', 'DRY_RUN', 'CAM_WEIGHTS', 'MASK_CLIP_WEIGHTS',
                     'IMAGENET_WEIGHTS', 'BACKBONE_WEIGHTS', 'VQA_FG', 'VQA_BG', 'VQA_FG_CACHE',
                     'VQA_BG_CACHE', 'CRF'}


@pytest.mark.parametrize('script', sorted(FLOWS) + ['scripts/flow_common.sh'])
def test_flows_repeat_no_python_default(script):
    """Every other setting comes from run_sample.py (python_defaults), with no second
    default in the shell; the COCO flows set nothing but the dataset."""
    text = (REPO / script).read_text()
    own = set(re.findall(r'^\s*(?:export )?(\w+)=\$\{\1:-', text, flags=re.M))
    assert own <= FLOW_OWN_SETTINGS
    assert not own & set(python_defaults_variables(script))
    if script.startswith('run_coco14'):
        assert re.findall(r'^export (\w+)=(.*)$', text, flags=re.M) == [('DATASET', 'coco14')]


@pytest.mark.parametrize('dataset, script', [('voc12', 'run_voc12_qa_clims.sh'),
                                             ('coco14', 'run_coco14_qa_clims.sh')])
def test_unset_settings_take_the_registry_value_and_set_ones_win(tmp_path, dataset, script):
    default = dataset_entry(dataset).defaults['clims_learning_rate']
    for variables, expected in (({}, default), ({'CLIMS_LEARNING_RATE': '0.5'}, 0.5)):
        training = [effective_args(argv) for argv in map(run_sample_argv,
                                                         dry_run(tmp_path, script, **variables))
                    if argv is not None][0]
        assert (training.dataset, training.clims_learning_rate) == (dataset, expected)


def flag_variable_pairs(script):
    """(VAR, flag) of each python_defaults VAR=flag pair and each '--flag "$VAR"' argument."""
    text = (REPO / script).read_text().replace('\\\n', ' ')
    calls = ' '.join(re.findall(r'^python_defaults (.*)$', text, flags=re.M))
    pairs = [tuple(pair.split('=', 1)) for pair in calls.split()]
    return pairs + [(var, flag) for flag, var in re.findall(r'--(\w+) "\$(\w+)"', text)]


def test_each_flag_has_one_variable_named_after_it():
    """A variable stands for one flag in every flow, and a flag has one variable; a
    setting read from Python is named as its flag (CLIMS_BATCH_SIZE for
    --clims_batch_size), so no name is reused for two stages' settings. (Lower-case
    variables are the flows' own intermediate values, such as the dataset's VQA file
    names that VQA_FG defaults to in vqa/, not settings.)"""
    pairs = {(var, flag) for script in FLOWS for var, flag in flag_variable_pairs(script)
             if var.isupper()}
    flags_of, variables_of = {}, {}
    for var, flag in pairs:
        flags_of.setdefault(var, set()).add(flag)
        variables_of.setdefault(flag, set()).add(var)
    assert {var: flags for var, flags in flags_of.items() if len(flags) > 1} == {}
    assert {flag: v for flag, v in variables_of.items() if len(v) > 1} == {}
    for script in FLOWS:
        for var in python_defaults_variables(script):
            assert var.lower() in vars(run_sample.build_parser().parse_args([])), var
    assert {'CAM_BATCH_SIZE', 'CLIMS_BATCH_SIZE', 'IRN_BATCH_SIZE', 'SEG_BATCH_SIZE',
            'CLIMS_CROP_SIZE', 'IRN_CROP_SIZE', 'SEG_CROP_SIZE'} & set(flags_of) == {
        'CLIMS_BATCH_SIZE', 'IRN_BATCH_SIZE', 'SEG_BATCH_SIZE', 'CLIMS_CROP_SIZE',
        'IRN_CROP_SIZE', 'SEG_CROP_SIZE'}
    assert not {'BATCH_SIZE', 'CROP_SIZE', 'LR', 'EPOCHS', 'EVAL_SET'} & set(flags_of)


@pytest.mark.parametrize('dataset, variable, folder', [
    ('voc12', 'VOC12_ROOT', '/data/voc'), ('coco14', 'MSCOCO_ROOT', '/data/coco'),
    ('folder', 'DATA_ROOT', '/data/mine')])
def test_the_dataset_folder_flag_comes_from_the_registry(tmp_path, dataset, variable, folder):
    """flow_common.sh names no dataset: --dataset and its root flag (data/registry.py,
    run_sample.py --print_root_flag) valued by the flag's variable."""
    code = [line for line in (REPO / 'scripts' / 'flow_common.sh').read_text().splitlines()
            if not line.lstrip().startswith('#')]
    assert not [line for line in code if re.search(r'voc12|coco14|VOC12_ROOT|MSCOCO_ROOT', line)]
    root_flag = dataset_entry(dataset).root_flag
    assert variable == root_flag.upper()
    done = subprocess.run([PYTHON, str(REPO / 'run_sample.py'), '--print_root_flag', dataset],
                          capture_output=True, text=True, check=True)
    assert done.stdout == root_flag + '\n'
    for words in dry_run(tmp_path, 'run_voc12_sem_seg.sh', DATASET=dataset, **{variable: folder}):
        argv = run_sample_argv(words)
        args = effective_args(argv)
        assert argv[:3] == ['--dataset', dataset, '--' + root_flag]
        assert (args.dataset, getattr(args, root_flag)) == (dataset, folder)
