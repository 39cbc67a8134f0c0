"""Mutation probe: do the tests fail when results break?

Each mutant is one plausible one-line bug: a file, the exact original text
(it must occur once), its replacement, and the tests that cover the mutated
behaviour (test files, or ``file::test`` node ids where a file also holds slow
tests of other things: torchrun, kill-and-resume). For every mutant the probe
copies the repository once to a scratch folder (never touching this
checkout), applies the mutant there, runs

    OMP_NUM_THREADS=1 python -m pytest -q -x -p no:cacheprovider <tests>

with a timeout, records killed (a test failed) or survived, and restores the
file. It prints a table and the score (killed / all).

    python bench/mutation_probe.py                 # every mutant
    python bench/mutation_probe.py --only NAME ... # some of them
    python bench/mutation_probe.py --list          # the mutants, nothing run

The scratch copies test against the reference fixtures this checkout's tests
use (``tests/conftest.py``'s ``locate_fixtures``; docs/README.md#reference-fixtures).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import namedtuple
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'tests'))

from conftest import locate_fixtures  # noqa: E402  (the tests' own fixture lookup)

IGNORED = shutil.ignore_patterns('.git', '.venv', '__pycache__', '*.pyc', '.pytest_cache')

Mutant = namedtuple('Mutant', 'name path original replacement tests equivalent',
                    defaults=(None,))

STEP_CAM = 'tests/test_train_cam.py::test_train_cam_step_matches_reference'
STEP_IRN = 'tests/test_train_irn.py::test_train_irn_step_matches_reference'
STEP_QA = 'tests/test_qa_clims_step.py'
WIRING = 'tests/test_wiring.py'
ALIGN = 'tests/test_augment_alignment.py'
SEG_STEP = 'tests/test_seg.py::test_train_seg_optimizer_groups_and_one_step_with_frozen_batchnorm'

MUTANTS = [
    # ---------------------------------------------------------------- stage wiring
    Mutant('cam_classifier_no_weight_decay', 'net/resnet50_cam.py',
           "'weight_decay': weight_decay}]", "'weight_decay': 0.0}]", [STEP_CAM, WIRING]),
    Mutant('poly_power_1', 'misc/torchutils.py',
           'max_step, power=0.9, fix_momentum_quirk', 'max_step, power=1.0, fix_momentum_quirk',
           [STEP_CAM, WIRING]),
    Mutant('momentum_quirk_dropped', 'misc/torchutils.py',
           'momentum = 0.9 if fix_momentum_quirk else weight_decay',
           'momentum = 0.9 if fix_momentum_quirk else 0.0', [STEP_CAM, WIRING]),
    Mutant('engine_no_zero_grad', 'pipeline/engine.py',
           '        self.optimizer.zero_grad()\n', '', [STEP_CAM, STEP_IRN, STEP_QA, WIRING]),
    Mutant('qa_clims_schedule_one_epoch', 'step/train_qa_clims.py',
           'steps_per_epoch * args.clims_num_epoches,', 'steps_per_epoch,', [STEP_QA, WIRING]),
    Mutant('train_irn_schedule_one_epoch', 'step/train_irn.py',
           "max_step = args.irn_num_epoches * training.plan(",
           "max_step = 1 * training.plan(",
           [STEP_IRN, WIRING]),
    Mutant('train_cam_dataset_not_flipped', 'step/train_cam.py',
           'resize_long=args.cam_resize_long, hor_flip=True,',
           'resize_long=args.cam_resize_long, hor_flip=False,', [STEP_CAM, WIRING]),
    Mutant('train_seg_lr_decay_every_ignored', 'step/train_seg.py',
           'stepwise_poly_lr_lambda(args.seg_num_iters, every=args.seg_lr_decay_every)',
           'stepwise_poly_lr_lambda(args.seg_num_iters)',
           ['tests/test_seg.py::test_poly_lr_recomputed_every_ten_iterations',
            SEG_STEP,
            WIRING]),
    Mutant('train_seg_momentum_0', 'step/train_seg.py',
           'lr=args.seg_learning_rate, momentum=0.9)', 'lr=args.seg_learning_rate, momentum=0.0)',
           [SEG_STEP]),
    Mutant('train_seg_micro_batch_loss_not_averaged', 'pipeline/engine.py',
           'v / len(micro_batches) for k, v in', 'v for k, v in',
           ['tests/test_seg.py::test_accumulated_micro_batches_give_the_batch_gradient']),
    Mutant('sampler_epoch_not_set', 'pipeline/engine.py',
           '    sampler.set_epoch(epoch)\n', '', [WIRING]),
    Mutant('augmentation_seed_ignores_epoch', 'pipeline/engine.py',
           'seed * 100003 + epoch * 1009 + dist.rank()', 'seed * 100003 + dist.rank()',
           [WIRING]),
    Mutant('irn_only_last_dp_layer_trained', 'net/resnet50_irn.py',
           "n.startswith('fc_dp')]", "n.startswith('fc_dp7')]", [STEP_IRN]),
    Mutant('irn_displacement_loss_weight_1', 'net/resnet50_irn.py',
           "(terms['pos'] + neg_loss) / 2 + (dp_fg_loss + dp_bg_loss) / 2",
           "(terms['pos'] + neg_loss) / 2 + (dp_fg_loss + dp_bg_loss)", [STEP_IRN]),
    Mutant('qa_clims_hyper_swapped', 'net/rtc_objective.py',
           'cfg.hyper[0] * l_frc + cfg.hyper[1] * l_brc',
           'cfg.hyper[1] * l_frc + cfg.hyper[0] * l_brc', [STEP_QA]),
    Mutant('train_cam_loss_bce', 'step/train_cam.py',
           "{'loss': F.multilabel_soft_margin_loss(forward(pack['img']).float(), pack",
           "{'loss': F.binary_cross_entropy_with_logits(forward(pack['img']).float(), pack",
           [STEP_CAM, WIRING],
           'the multilabel soft-margin loss is the mean over batch and classes of the '
           'per-element logistic loss, which is what BCE-with-logits (mean) computes'),
    Mutant('mean_shift_estimated_in_train_mode', 'net/resnet50_irn.py',
           '    irnet.eval()\n    means = []', '    means = []', [WIRING],
           'the backbone stays in eval mode whatever the mode, the branches have no '
           'BatchNorm or dropout, and MeanShift subtracts running_mean, still 0 then'),
    # ---------------------------------------------------------------- augmentation
    Mutant('crop_offset_x_from_height', 'misc/imutils.py',
           'ox = random.randrange(abs(w - cropsize) + 1)',
           'ox = random.randrange(abs(h - cropsize) + 1)', [ALIGN, WIRING]),
    Mutant('irn_label_rescaled_bicubic', 'misc/imutils.py',
           'return pil_rescale(img, scale, 3), pil_rescale(label, scale, 0)',
           'return pil_rescale(img, scale, 3), pil_rescale(label, scale, 3)', [ALIGN, WIRING]),
    Mutant('seg_label_rescaled_bicubic', 'data/loaders.py',
           'imutils.pil_rescale(label, scale, 0)', 'imutils.pil_rescale(label, scale, 3)',
           [ALIGN, WIRING]),
    Mutant('classification_flip_vertical', 'misc/imutils.py',
           '        return np.fliplr(img)\n    return img',
           '        return np.flipud(img)\n    return img',
           ['tests/test_voc_data.py', WIRING]),
    Mutant('classification_crop_method_inverted', 'data/loaders.py',
           "if self.crop_method == 'random':", "if self.crop_method == 'top_left':",
           ['tests/test_voc_data.py', WIRING]),
    Mutant('resize_long_never_reaches_max', 'misc/imutils.py',
           'random.randint(min_long, max_long)', 'random.randint(min_long, max_long - 1)',
           ['tests/test_voc_data.py', WIRING]),
    Mutant('multiscale_flip_vertical', 'data/loaders.py',
           'np.stack([chw, chw[:, :, ::-1]])', 'np.stack([chw, chw[:, ::-1, :]])',
           ['tests/test_voc_data.py']),
    # ---------------------------------------------------------------- evaluation
    Mutant('eval_seg_softmax_before_resize', 'step/eval_seg.py',
           "probs = F.softmax(F.interpolate(logits, (h, w), mode='bilinear',\n"
           "                                        align_corners=False), dim=1)",
           "probs = F.interpolate(F.softmax(logits, dim=1), (h, w), mode='bilinear',\n"
           "                                        align_corners=False)",
           ['tests/test_eval_seg_protocol.py']),
    Mutant('seg_crf_rgb_std_5', 'wsss/crf.py', 'bi_rgb_std=3)', 'bi_rgb_std=5)',
           ['tests/test_eval_seg_protocol.py', WIRING]),
    Mutant('cam_scales_averaged', 'wsss/cam.py',
           "align_corners=False)[0] for o in outputs]).sum(0)",
           "align_corners=False)[0] for o in outputs]).mean(0)",
           ['tests/test_cam_fidelity.py::test_make_clims_reproduces_reference_cams',
            'tests/test_edge_numerics.py', WIRING]),
    Mutant('eval_sem_seg_void_not_background', 'step/eval_sem_seg.py',
           '    pred[pred == 255] = 0\n', '', ['tests/test_eval_sem_seg.py']),
    Mutant('fp_fn_swapped', 'wsss/metrics.py',
           'fp = 1.0 - gtj / denominator', 'fp = 1.0 - resj / denominator',
           ['tests/test_metrics.py']),
    Mutant('sem_seg_background_appended_last', 'step/make_sem_seg_labels.py',
           'F.pad(rw_up, (0, 0, 0, 0, 1, 0), value=bg_thres)',
           'F.pad(rw_up, (0, 0, 0, 0, 0, 1), value=bg_thres)',
           ['tests/test_sem_seg.py::test_random_walk_scores_match_reference',
            'tests/test_edge_numerics.py']),
    Mutant('random_walk_beta_multiplied', 'wsss/random_walk.py',
           'weight = aff ** beta', 'weight = aff * beta',
           ['tests/test_sem_seg.py::test_sparse_random_walk_matches_reference']),
    Mutant('ir_label_crf_unary_0_9', 'wsss/crf.py', 't=10, gt_prob=0.7)', 't=10, gt_prob=0.9)',
           ['tests/test_ir_label.py::test_confident_regions_reproduce_reference']),
    # ---------------------------------------------------------------- dataset code
    Mutant('voc_mask_prefers_sbd', 'voc12/devkit.py',
           '        if os.path.isfile(voc):\n            return voc\n', '',
           ['tests/test_voc_data.py', WIRING]),
    Mutant('voc_list_file_whole_line', 'data/base.py',
           'image_id = line.split()[0]', 'image_id = line.strip()', ['tests/test_voc_data.py']),
    Mutant('voc_train_aug_keeps_val', 'voc12/devkit.py',
           'return [i for i in ids if i not in val]', 'return ids',
           ['tests/test_voc_data.py']),
    Mutant('coco_category_id_minus_one', 'coco14/dataset.py',
           'return coco, {c: i for i, c in enumerate(cat_ids)}, by_stem',
           'return coco, {c: c - 1 for c in cat_ids}, by_stem', ['tests/test_coco_masks.py']),
    Mutant('coco_protocol_unsorted', 'coco14/protocol.py',
           'return sorted(ids)[:n_images]', 'return list(ids)[:n_images]',
           ['tests/test_reference_inputs.py']),
]


def copy_repo(dest):
    shutil.copytree(REPO, dest, ignore=IGNORED)
    return dest


def fixtures_env():
    """Environment of a test run in the scratch copy: the same fixtures, one thread."""
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    env['QA_CLIMS_FIXTURES'] = str(locate_fixtures(REPO))
    return env


def run_tests(scratch, tests, timeout):
    """('killed' | 'survived' | 'timeout' | 'error', the first failing test or a note).

    Listed test files that do not exist (yet) are left out and named in the note;
    with none left the mutant survives. A pytest usage error is 'error', not a kill.
    """
    present = [t for t in tests if (scratch / t.split('::')[0]).is_file()]
    note = ', '.join('no %s' % t for t in tests if t not in present)
    if not present:
        return 'survived', note
    cmd = [sys.executable, '-m', 'pytest', '-q', '-x', '-p', 'no:cacheprovider'] + present
    try:
        result = subprocess.run(cmd, cwd=scratch, env=fixtures_env(), capture_output=True,
                                text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 'timeout', ''
    if result.returncode == 0:
        return 'survived', note
    if result.returncode != 1:
        return 'error', 'pytest exit %d: %s' % (result.returncode, result.stdout[-300:])
    failed = [line.split()[1] for line in result.stdout.splitlines()
              if line.startswith(('FAILED ', 'ERROR '))]
    return 'killed', failed[0] if failed else 'pytest exit 1'


def apply(scratch, mutant):
    """Write the mutated file in the scratch copy; returns the original text of the file."""
    path = scratch / mutant.path
    text = path.read_text()
    count = text.count(mutant.original)
    if count != 1:
        raise ValueError('%s: the original text occurs %d times in %s (must be once)'
                         % (mutant.name, count, mutant.path))
    path.write_text(text.replace(mutant.original, mutant.replacement))
    return text


def probe(mutants, timeout):
    rows = []
    with tempfile.TemporaryDirectory(prefix='mutation_probe_') as tmp:
        scratch = copy_repo(Path(tmp) / 'repo')
        for mutant in mutants:
            original = apply(scratch, mutant)
            start = time.time()
            try:
                outcome, by = run_tests(scratch, mutant.tests, timeout)
            finally:
                (scratch / mutant.path).write_text(original)
            rows.append((mutant, outcome, by, time.time() - start))
            print('%-42s %-8s %5.0fs  %s' % (mutant.name, outcome, rows[-1][3], by), flush=True)
    return rows


def print_table(rows):
    print('\n| mutant | file | outcome | first failing test, or why it is equivalent |')
    print('|---|---|---|---|')
    for mutant, outcome, by, _ in rows:
        why = by or ('equivalent: ' + mutant.equivalent if mutant.equivalent else '-')
        print('| %s | %s | %s | %s |' % (mutant.name, mutant.path, outcome, why))
    killed = sum(1 for _, outcome, _, _ in rows if outcome == 'killed')
    real = sum(1 for m, _, _, _ in rows if not m.equivalent)
    print('\nscore: %d / %d killed (%.0f%%); %d / %d of the non-equivalent mutants'
          % (killed, len(rows), 100.0 * killed / len(rows), killed, real))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--only', nargs='+', default=None, help='names of the mutants to run')
    parser.add_argument('--timeout', type=float, default=900, help='seconds per mutant')
    parser.add_argument('--list', action='store_true', help='list the mutants and exit')
    args = parser.parse_args(argv)
    mutants = MUTANTS
    if args.only:
        unknown = sorted(set(args.only) - {m.name for m in MUTANTS})
        if unknown:
            parser.error('unknown mutants %s' % unknown)
        mutants = [m for m in MUTANTS if m.name in args.only]
    if args.list:
        for m in mutants:
            print('%-42s %-28s %s' % (m.name, m.path, ' '.join(m.tests)))
        return
    for m in mutants:                            # every original text exists, once
        count = (REPO / m.path).read_text().count(m.original)
        if count != 1:
            parser.error('%s: the original text occurs %d times in %s' % (m.name, count, m.path))
    print_table(probe(mutants, args.timeout))


if __name__ == '__main__':
    main()
