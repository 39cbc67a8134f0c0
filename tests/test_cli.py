"""run_sample.py's command line: per-dataset defaults from data.registry, the batch
flags, and the reference's own flags and list paths (mapped or refused)."""
import pytest

from conftest import VOC_MINI
from data.registry import DATASETS, dataset_entry
from net.registry import CAM_NETWORKS, RESNET50, CamNetwork
from pipeline.stage import build_source
import run_sample

LAUNCHER_VARS = ('WORLD_SIZE', 'RANK', 'LOCAL_RANK')


@pytest.fixture(autouse=True)
def no_launcher(monkeypatch):
    """Each test starts outside any launcher; launched() sets the launcher's variables."""
    for var in LAUNCHER_VARS:
        monkeypatch.delenv(var, raising=False)


def launched(monkeypatch, world, local_rank=0):
    monkeypatch.setenv('WORLD_SIZE', str(world))
    monkeypatch.setenv('RANK', str(local_rank))
    monkeypatch.setenv('LOCAL_RANK', str(local_rank))


def resolved(*argv):
    """(args, notes) after parsing and resolve_args, as run_stages sees them."""
    args = run_sample.build_parser().parse_args(list(argv))
    return args, run_sample.resolve_args(args)


@pytest.mark.parametrize('name', list(DATASETS))
def test_dataset_defaults_come_from_the_registry(name):
    args, notes = resolved('--dataset', name)
    for flag, value in dataset_entry(name).defaults.items():
        assert getattr(args, flag) == value, flag
    assert any(n.startswith('defaults of --dataset %s' % name) for n in notes)


def test_coco_trains_with_the_authors_coco_recipe():
    args, _ = resolved('--dataset', 'coco14')
    assert args.clims_learning_rate == 1e-5 and args.hyper == '30,24,0.2'
    assert args.vqa_fg_file.startswith('coco_') and args.train_list == 'train'
    voc, _ = resolved('--dataset', 'voc12')
    assert voc.clims_learning_rate == 3.5e-4 and voc.hyper == '10,8,0.2'


def test_an_explicit_flag_wins_over_the_dataset_default():
    args, notes = resolved('--dataset', 'coco14', '--clims_learning_rate', '0.002',
                           '--hyper', '1,2,3', '--vqa_fg_file', 'mine.json')
    assert (args.clims_learning_rate, args.hyper, args.vqa_fg_file) == (0.002, '1,2,3',
                                                                        'mine.json')
    assert not any('--hyper' in n or '--clims_learning_rate' in n for n in notes)


def test_build_source_uses_the_registry():
    args, _ = resolved('--voc12_root', str(VOC_MINI))
    source = build_source(args)
    assert source.name == 'voc12' and source.root == str(VOC_MINI)
    with pytest.raises(ValueError, match='--mscoco_root'):
        build_source(resolved('--dataset', 'coco14')[0])
    args.dataset = 'cityscapes'
    with pytest.raises(ValueError, match="unknown --dataset 'cityscapes' .*voc12, coco14"):
        build_source(args)


def test_batch_defaults():
    args, notes = resolved('--train_qa_clims_pass', 'True')
    assert (args.cam_batch_size, args.clims_batch_size) == (run_sample.CAM_BATCH_SIZE,
                                                            run_sample.CLIMS_BATCH_SIZE)
    assert not any('batch' in n for n in notes)


@pytest.mark.parametrize('world', [1, 2, 4])
def test_cam_batch_size_is_the_per_process_qa_clims_batch(monkeypatch, world):
    launched(monkeypatch, world)
    args, notes = resolved('--cam_batch_size', '4', '--train_qa_clims_pass', 'True')
    assert args.clims_batch_size == 4 * world
    assert any('--cam_batch_size 4 is the per-process QA-CLIMS batch' in n
               and '--clims_batch_size %d = 4 x %d processes' % (4 * world, world) in n
               for n in notes)


def test_clims_batch_size_wins_and_train_cam_keeps_cam_batch_size_global(monkeypatch):
    launched(monkeypatch, 2)
    args, notes = resolved('--cam_batch_size', '4', '--clims_batch_size', '6',
                           '--train_qa_clims_pass', 'True')
    assert (args.cam_batch_size, args.clims_batch_size) == (4, 6)
    assert not any('per-process' in n for n in notes)
    args, _ = resolved('--cam_batch_size', '4', '--train_cam_pass', 'True')
    assert (args.cam_batch_size, args.clims_batch_size) == (4, run_sample.CLIMS_BATCH_SIZE)


@pytest.mark.parametrize('spelling', [['--local-rank=1'], ['--local_rank', '1'],
                                      ['--local-rank', '1'], ['--local_rank=1']])
def test_local_rank_from_the_launcher_is_accepted(monkeypatch, spelling):
    launched(monkeypatch, 2, local_rank=1)
    args, _ = resolved('--use_distributed_train', 'True', *spelling)
    assert args.local_rank == 1


def test_local_rank_that_disagrees_with_the_launcher_is_refused(monkeypatch):
    with pytest.raises(ValueError, match=r'--local_rank 1 does not match LOCAL_RANK=\(unset\)'):
        resolved('--local_rank', '1')
    launched(monkeypatch, 2, local_rank=0)
    with pytest.raises(ValueError, match='--local_rank 1 does not match LOCAL_RANK=0'):
        resolved('--local-rank=1')


def test_use_distributed_train_needs_a_launcher(monkeypatch):
    with pytest.raises(ValueError, match='--use_distributed_train True: start run_sample.py '
                                         'with torchrun'):
        resolved('--use_distributed_train', 'True')
    launched(monkeypatch, 2)
    resolved('--use_distributed_train', 'True')
    with pytest.raises(ValueError, match='--use_distributed_train False, but the launcher '
                                         'started 2 processes'):
        resolved('--use_distributed_train', 'False')


@pytest.mark.parametrize('flag, module', [('cam_network', 'net.resnet50_cam'),
                                          ('clims_network', 'net.resnet50_clims'),
                                          ('irn_network', 'net.resnet50_irn')])
def test_reference_network_modules_name_the_resnet50_family(flag, module):
    args, _ = resolved('--' + flag, module)
    assert getattr(args, flag) == RESNET50.name and args.cam_network == RESNET50.name


@pytest.mark.parametrize('flag', ['--cam_network', '--clims_network', '--irn_network'])
def test_an_unknown_network_is_an_argparse_error_listing_the_registered_ones(capsys, flag):
    with pytest.raises(SystemExit):
        run_sample.build_parser().parse_args([flag, 'net.resnet101_x'])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.split(': ', 1)[1].startswith("error: argument %s: unknown CAM network "
                                              "'net.resnet101_x' (registered: " % flag)
    assert all(name in error for entry in CAM_NETWORKS.values()
               for name in (entry.name,) + entry.aliases)


def test_stage_network_flags_must_name_the_cam_network_family(monkeypatch):
    other = CamNetwork('other', RESNET50.backbone)
    monkeypatch.setitem(CAM_NETWORKS, other.name, other)
    resolved('--cam_network', 'other', '--clims_network', 'other')
    with pytest.raises(ValueError, match='--irn_network resnet50: --cam_network \\(other\\) picks '
                                         'the network of every stage; pass --cam_network '
                                         'resnet50 and drop --irn_network'):
        resolved('--cam_network', 'other', '--irn_network', 'net.resnet50_irn')


def test_feature_dim_and_num_cores_eval():
    args, notes = resolved('--feature_dim', str(RESNET50.feature_dim), '--num_cores_eval', '8')
    assert args.feature_dim == RESNET50.feature_dim
    assert '--num_cores_eval 8 has no effect (the reference does not read it either)' in notes
    with pytest.raises(ValueError, match='--feature_dim 512: the features of --cam_network '
                                         'resnet50 have %d channels' % RESNET50.feature_dim):
        resolved('--feature_dim', '512')


@pytest.mark.parametrize('dataset', list(DATASETS))
def test_print_defaults_prints_the_values_the_stages_use(capsys, dataset):
    flags = ['train_list', 'clims_learning_rate', 'cam_scales', 'clims_batch_size',
             'mask_clip_weights', 'use_mask_clip']
    run_sample.main(['--dataset', dataset, '--print_defaults'] + flags)
    printed = capsys.readouterr().out.split('\n')
    args, _ = resolved('--dataset', dataset)
    assert printed[:-1] == [str(args.train_list), str(args.clims_learning_rate),
                            ','.join(map(str, args.cam_scales)), str(args.clims_batch_size),
                            '', str(args.use_mask_clip)]
    assert printed[-1] == ''
    parsed = run_sample.build_parser().parse_args(['--cam_scales', printed[2]])
    assert parsed.cam_scales == args.cam_scales          # a printed list reads back as given


def test_reference_list_paths_become_splits(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args, notes = resolved('--train_list', 'voc12/train_aug.txt', '--infer_list',
                           'voc12/train.txt', '--val_list', 'voc12/val.txt')
    assert (args.train_list, args.infer_list, args.val_list) == ('train_aug', 'train', 'val')
    assert '--train_list voc12/train_aug.txt: no such file; using the split train_aug' in notes
    (tmp_path / 'voc12').mkdir()
    (tmp_path / 'voc12' / 'train.txt').write_text('2007_000032\n')
    args, _ = resolved('--train_list', 'voc12/train.txt', '--infer_list', 'val')
    assert (args.train_list, args.infer_list) == ('voc12/train.txt', 'val')


def test_resolving_twice_changes_nothing(monkeypatch):
    launched(monkeypatch, 2)
    args, _ = resolved('--dataset', 'coco14', '--cam_batch_size', '4', '--train_qa_clims_pass',
                       'True', '--infer_list', 'voc12/train_aug.txt')
    before = dict(vars(args))
    assert run_sample.resolve_args(args) == []
    assert vars(args) == before


def test_the_authors_voc_training_command_line(monkeypatch):
    """run_voc12_qa_clims.sh's training call under torch.distributed.launch --nproc_per_node 2."""
    launched(monkeypatch, 2, local_rank=1)
    args, _ = resolved(
        '--local-rank=1', '--use_distributed_train', 'True', '--work_space', 'ws',
        '--voc12_root', '/data/VOC2012', '--cam_batch_size', '4',
        '--clims_learning_rate', '0.00035', '--nce_t', '0.7', '--hyper', '10,8,0.2',
        '--mask_adapter_alpha', '0.1', '--vqa_fg_file', 'vqa/voc_vqa_fg_blip.npy',
        '--vqa_fg_cache_file', 'vqa/voc_vqa_fg_blip_ViT-L-14_cache.npy',
        '--vqa_bg_file', 'vqa/voc_vqa_bg_blip.npy',
        '--vqa_bg_cache_file', 'vqa/voc_vqa_bg_blip_ViT-L-14_cache.npy',
        '--use_mask_clip', 'True', '--clip', 'ViT-L/14', '--cam_network', 'net.resnet50_cam',
        '--clims_network', 'net.resnet50_clims', '--irn_network', 'net.resnet50_irn',
        '--feature_dim', '2048', '--num_cores_eval', '8', '--train_list', 'voc12/train_aug.txt',
        '--train_qa_clims_pass', 'True')
    assert (args.clims_batch_size, args.clims_loss_ref_batch, args.train_list) == (
        8, 4, 'train_aug')
    assert args.vqa_fg_file == 'vqa/voc_vqa_fg_blip.npy' and args.hyper == '10,8,0.2'
