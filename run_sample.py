"""Run the pipeline stages chosen with ``--<stage>_pass True``, in order.

    python run_sample.py --voc12_root VOCdevkit/VOC2012 --work_space ws \\
        --make_clims_pass True --clims_weights_name /path/res50_qa_clims.pth --eval_cam_pass True

Flag names and defaults follow the reference implementation
(docs/method.md#command-line); flags marked "default per --dataset" take the
value of the dataset's entry in :mod:`data.registry` unless given;
``--cam_network`` picks the backbone of every CAM network and IRNet from
:mod:`net.registry`. ``--print_defaults FLAG ...`` prints the values the
stages would use and exits (the run_*.sh flows read theirs with it), as
``--print_root_flag DATASET`` prints the flag of a dataset's folder. Under
``torchrun`` (or ``python -m torch.distributed.launch``) the training stages
run DDP and the inference stages are sharded over the processes. The
reference's own command lines are accepted: its flags that have no
counterpart here are mapped or refused by :func:`resolve_args`.
"""
import argparse
import importlib
import json
import os
import time

from coco14.protocol import PROTOCOLS as COCO_PROTOCOLS
from data.registry import DATASETS, dataset_entry, missing_dataset_defaults, per_dataset_help
from misc.io import release_outputs
from misc.logutil import setup_logging
from misc.torchutils import FLOAT_DTYPES
from net.registry import DEFAULT as DEFAULT_CAM_NETWORK, cam_network, registered_names

STAGES = ('vqa', 'train_cam', 'train_qa_clims', 'make_cam', 'make_clims', 'eval_cam',
          'cam_to_ir_label', 'train_irn', 'make_sem_seg', 'eval_sem_seg', 'train_seg', 'eval_seg',
          'predict')
STAGE_MODULES = {'make_sem_seg': 'step.make_sem_seg_labels'}
CAM_BATCH_SIZE = 16             # train_cam's global batch
CLIMS_BATCH_SIZE = 8            # QA-CLIMS global batch: the reference's 4 per GPU x 2 GPUs
# The reference's network flags of QA-CLIMS and IRNet: --cam_network picks every stage's here.
STAGE_NETWORK_FLAGS = ('clims_network', 'irn_network')
REFERENCE_LIST_FLAGS = ('train_list', 'val_list', 'infer_list')
IRN_MIN_CROP = 76               # crop // 4 >= 19: IRNet's radius-10 pairs need > 2 x 9 columns
SEG_OUTPUT_STRIDE = 8           # DeepLab's output stride


class FlagError(ValueError):
    """A flag value (or combination) that cannot be run; reported as an argparse error."""


def str2bool(value):
    if isinstance(value, bool):
        return value
    if value.lower() in ('true', '1', 'yes', 'y'):
        return True
    if value.lower() in ('false', '0', 'no', 'n'):
        return False
    raise argparse.ArgumentTypeError('expected True or False, got %r' % value)


def _number(value, kind, expected):
    """``kind(value)``, or an argparse error saying what was ``expected``."""
    try:
        return kind(value)
    except ValueError:
        raise argparse.ArgumentTypeError('expected %s, got %r' % (expected, value)) from None


def int_at_least(minimum, why=''):
    """argparse type: an integer >= ``minimum`` (``why`` says where the bound comes from)."""
    expected = 'an integer >= %d%s' % (minimum, why)

    def parse(value):
        number = _number(value, int, expected)
        if number < minimum:
            raise argparse.ArgumentTypeError('expected %s, got %r' % (expected, value))
        return number
    parse.__name__ = 'int_at_least_%d' % minimum
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)
irn_crop_size = int_at_least(
    IRN_MIN_CROP, ' (IRNet\'s pairs within radius 10 need a stride-4 grid of more than 18 '
    'columns)')
seg_crop_size = int_at_least(
    SEG_OUTPUT_STRIDE, ' (DeepLab\'s output stride: a smaller crop is less than one output '
    'cell)')


def unit_interval(value):
    """argparse type: a threshold in [0, 1]."""
    number = _number(value, float, 'a number in [0, 1]')
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError('expected a number in [0, 1], got %r' % value)
    return number


def positive_float_tuple(value):
    """argparse type: a non-empty comma-separated list of numbers > 0 ("1.0,0.5")."""
    expected = 'a comma-separated list of numbers > 0'
    parts = [v for v in value.split(',') if v.strip()]
    numbers = tuple(_number(v, float, expected) for v in parts)
    if not numbers or min(numbers) <= 0:
        raise argparse.ArgumentTypeError('expected %s, got %r' % (expected, value))
    return numbers


def int_pair(value):
    """argparse type: "MIN,MAX", two integers with 1 <= MIN <= MAX."""
    expected = 'two integers "MIN,MAX" with 1 <= MIN <= MAX'
    pair = tuple(_number(v, int, expected) for v in value.split(','))
    if len(pair) != 2 or not 1 <= pair[0] <= pair[1]:
        raise argparse.ArgumentTypeError('expected %s, got %r' % (expected, value))
    return pair


def network_name(value):
    """argparse type: a registered CAM network (name or alias) -> its registry name."""
    try:
        return cam_network(value).name
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group('environment')
    g.add_argument('--dataset', default='voc12', choices=list(DATASETS))
    g.add_argument('--voc12_root', default=None, help='VOCdevkit/VOC2012 folder')
    g.add_argument('--mscoco_root', default=None,
                   help='MS COCO 2014 folder (train2014/, val2014/, annotations/)')
    g.add_argument('--data_root', default=None,
                   help='--dataset folder: your own data (images/, classes.txt, labels.csv or '
                   'labels.json, optional splits/ and masks/; see data/folder.py)')
    g.add_argument('--work_space', default='work_space', help='folder of every output')
    g.add_argument('--log_name', default='run', help='log file name in work_space')
    g.add_argument('--train_list', default=None,
                   help='split name (train, train_aug, ...) or list file; '
                   + per_dataset_help('train_list'))
    g.add_argument('--val_list', default='val', help='split name or list file ("" to skip)')
    g.add_argument('--infer_list', default=None,
                   help='split name or list file: images that get CAMs and pseudo masks; '
                   + per_dataset_help('infer_list'))
    g.add_argument('--chainer_eval_set', default='train',
                   help='split evaluated by eval_cam and eval_sem_seg')
    g.add_argument('--coco_protocol', default='reference', choices=COCO_PROTOCOLS,
                   help='COCO only. reference: the authors\' COCO flow: CAMs, confident regions '
                   'and pseudo masks of the first 10,000 images of the list (ascending image id), '
                   'eval_cam on the first 9,999, eval_sem_seg on the first 10,000, --eval_cam_best '
                   'sweep 0.10..0.58 step 0.02; full: every listed image, sweep 0.05..0.59')
    g.add_argument('--num_workers', default=os.cpu_count() or 1, type=non_negative_int)
    g.add_argument('--seed', default=0, type=int)
    g.add_argument('--device', default='auto', help="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    g.add_argument('--amp', default=False, type=str2bool, help='mixed precision (bf16 on CPU)')
    g.add_argument('--tensorboard', default=False, type=str2bool,
                   help='training stages also write their loss terms as TensorBoard scalars into '
                   'work_space/tb/<stage> (needs the tensorboard package)')
    g.add_argument('--cam_network', default=DEFAULT_CAM_NETWORK, type=network_name,
                   help='backbone of the baseline CAM, QA-CLIMS and IRNet networks of every stage '
                   '(net/registry.py): %s' % registered_names())
    g.add_argument('--print_defaults', nargs='+', default=None, metavar='FLAG',
                   help='print the value of each FLAG (e.g. clims_learning_rate), one per line, '
                   'with the per-dataset defaults of --dataset filled in, and exit (lists are '
                   'comma-separated, an unset value is an empty line)')
    g.add_argument('--print_root_flag', default=None, choices=list(DATASETS), metavar='DATASET',
                   help='print the flag that names DATASET\'s folder (e.g. voc12_root; '
                   'data/registry.py) and exit')
    g.add_argument('--overwrite', default=True, type=str2bool,
                   help='outputs and resumable training states made from other weights, settings '
                   'or upstream outputs than this run\'s (each output folder, weights file and '
                   'training state has a <name>.provenance.json beside it) are redone, with the '
                   'differences logged; False: the stage refuses instead, naming what differs')

    g = p.add_argument_group('baseline CAM network')
    g.add_argument('--imagenet_weights', default=None,
                   help='torchvision ImageNet ResNet-50 weights file (backbone initialisation)')
    g.add_argument('--cam_batch_size', default=None, type=positive_int,
                   help='train_cam\'s global batch (default %d); with --train_qa_clims_pass and '
                   'no --clims_batch_size also the per-process QA-CLIMS batch, as in the '
                   'reference\'s scripts' % CAM_BATCH_SIZE)
    g.add_argument('--cam_num_epoches', default=5, type=positive_int)
    g.add_argument('--cam_learning_rate', default=0.1, type=float)
    g.add_argument('--cam_weight_decay', default=1e-4, type=float)
    g.add_argument('--cam_crop_size', default=512, type=positive_int,
                   help='at least the --cam_network\'s output stride (resnet50: 16)')
    g.add_argument('--cam_resize_long', default=(320, 640), type=int_pair,
                   help='random long-side resize range "MIN,MAX"')
    g.add_argument('--cam_detach_early_stages', default=False, type=str2bool,
                   help='IRNet\'s baseline variant: detach the layer2 output and freeze '
                        'layer1-2 (the authors train every stage but conv1/bn1)')
    g.add_argument('--fix_momentum_quirk', default=False, type=str2bool,
                   help='use SGD momentum 0.9 instead of the reference\'s effective 1e-4')
    g.add_argument('--cam_eval_thres', default=0.15, type=unit_interval)
    g.add_argument('--cam_scales', default=(1.0, 0.5, 1.5, 2.0), type=positive_float_tuple)
    g.add_argument('--eval_cam_best', default=False, type=str2bool,
                   help='also sweep thresholds 0.05..0.59 and report the best')

    g = p.add_argument_group('VQA answers (BLIP)')
    g.add_argument('--vqa_model', default='Salesforce/blip-vqa-capfilt-large',
                   help='folder of a HuggingFace BLIP VQA model (or a hub id)')
    g.add_argument('--vqa_list', default=None, help='images to ask about (default: --train_list)')
    g.add_argument('--vqa_batch_size', default=4, type=positive_int,
                   help='images per generate call')
    g.add_argument('--vqa_image_size', default=480, type=int)
    g.add_argument('--vqa_num_beams', default=3, type=int)
    g.add_argument('--vqa_max_length', default=10, type=int)
    g.add_argument('--vqa_min_length', default=1, type=int)
    g.add_argument('--vqa_dtype', default='float32', choices=list(FLOAT_DTYPES))
    g.add_argument('--vqa_lemmatizer', default='auto', choices=['auto', 'wordnet', 'lemminflect'])
    g.add_argument('--vqa_question_bos', default='enc', choices=['enc', 'cls'],
                   help='first question token: [ENC] as the reference BLIP, or [CLS] as '
                        'HuggingFace\'s BlipForQuestionAnswering')
    g.add_argument('--vqa_parts_dir', default='vqa_parts')
    g.add_argument('--vqa_export_npy', default=False, type=str2bool,
                   help='also write the reference pickled .npy files')

    g = p.add_argument_group('QA-CLIMS training')
    g.add_argument('--clims_num_epoches', default=15, type=positive_int)
    g.add_argument('--clims_learning_rate', default=None, type=float,
                   help='backbone lr (classifier 10x); ' + per_dataset_help('clims_learning_rate'))
    g.add_argument('--clims_batch_size', default=None, type=positive_int,
                   help='global batch (default %d: the reference\'s 4 per GPU on 2 GPUs)'
                   % CLIMS_BATCH_SIZE)
    g.add_argument('--clims_weight_decay', default=1e-4, type=float,
                   help='the reference trains with --cam_weight_decay\'s default, 1e-4')
    g.add_argument('--clims_crop_size', default=512, type=positive_int,
                   help='at least the --cam_network\'s output stride (resnet50: 16)')
    g.add_argument('--clims_resize_long', default=(320, 640), type=int_pair,
                   help='random long-side resize range "MIN,MAX"')
    g.add_argument('--clims_loss_ref_batch', default=4, type=positive_int,
                   help='L_FRC and L_BRC (sums over instances) are scaled by this / images per '
                   'process, so any process count gives the gradient of the reference\'s 2 GPUs '
                   'x 4 images (L_REG, a mean, is not scaled)')
    g.add_argument('--hyper', default=None,
                   help='weights of L_FRC, L_BRC, L_REG; ' + per_dataset_help('hyper'))
    g.add_argument('--clip', default='ViT-L/14',
                   help='CLIP that made the answer caches: a name in ~/.cache/clip or a file')
    g.add_argument('--clip_weights', default=None, help='explicit file for --clip')
    g.add_argument('--use_mask_clip', default=True, type=str2bool)
    g.add_argument('--mask_clip_weights', default=None,
                   help='OVSeg ovseg_swinbase_vitL14_ft_mpt.pth (mask-adapted CLIP)')
    g.add_argument('--clip_dtype', default='float32', choices=list(FLOAT_DTYPES))
    g.add_argument('--nce_t', default=0.7, type=float)
    g.add_argument('--mask_adapter_alpha', default=0.1, type=float, help='FAT alpha')
    g.add_argument('--vqa_fg_file', default=None,
                   help='FG VQA results (JSON); bare names live in work_space; '
                   + per_dataset_help('vqa_fg_file'))
    g.add_argument('--vqa_bg_file', default=None, help=per_dataset_help('vqa_bg_file'))
    g.add_argument('--vqa_fg_cache_file', default=None, help=per_dataset_help('vqa_fg_cache_file'))
    g.add_argument('--vqa_bg_cache_file', default=None, help=per_dataset_help('vqa_bg_cache_file'))

    g = p.add_argument_group('segmentation network (docs/method.md#segmentation-network)')
    g.add_argument('--seg_arch', default='deeplabv2',
                   choices=['deeplabv2', 'deeplabv2_caffe', 'deeplabv2_resnet50', 'deeplabv3'],
                   help='deeplabv2 (torchvision ResNet-101 weights), deeplabv2_caffe (a converted '
                   'DeepLab initialisation), deeplabv2_resnet50 (the same on torchvision ResNet-50 '
                   'weights: the CPU demo), deeplabv3')
    g.add_argument('--seg_backbone_weights', default=None,
                   help='torchvision resnet101-*.pth (deeplabv2, deeplabv3), resnet50-*.pth '
                   '(deeplabv2_resnet50) or a converted DeepLab initialisation in '
                   'deeplab-pytorch\'s layout (deeplabv2_caffe)')
    g.add_argument('--seg_train_list', default=None,
                   help='images the segmentation network trains on; '
                   + per_dataset_help('seg_train_list'))
    g.add_argument('--seg_label_dir', default='sem_seg',
                   help='pseudo masks to train on (bare name in work_space); gt = ground truth')
    g.add_argument('--seg_batch_size', default=10, type=positive_int, help='global batch')
    g.add_argument('--seg_crop_size', default=321, type=seg_crop_size)
    g.add_argument('--seg_scales', default=(0.5, 0.75, 1.0, 1.25, 1.5), type=positive_float_tuple,
                   help='training rescale factors, one drawn per image (CLIMS: up to 2.0)')
    g.add_argument('--seg_num_iters', default=30000, type=positive_int)
    g.add_argument('--seg_learning_rate', default=2.5e-4, type=float)
    g.add_argument('--seg_weight_decay', default=5e-4, type=float)
    g.add_argument('--seg_msc', default=True, type=str2bool,
                   help='multi-scale inputs 1, 0.75, 0.5 fused by max (deeplab-pytorch MSC), '
                   'in training and evaluation')
    g.add_argument('--seg_iter_size', default=1, type=positive_int,
                   help='micro-batches of --seg_batch_size accumulated per iteration '
                   '(CLIMS\'s DeepLab config: 2)')
    g.add_argument('--seg_lr_decay_every', default=10, type=positive_int,
                   help='the poly lr is recomputed every N iterations (deeplab-pytorch: 10)')
    g.add_argument('--seg_grad_clip', default=0.0, type=float,
                   help='max gradient norm (0 = no clipping, the DeepLab protocol)')
    g.add_argument('--seg_weights_name', default='deeplab_seg.safetensors')
    g.add_argument('--seg_eval_set', default='val')
    g.add_argument('--seg_eval_scales', default=(0.5, 0.75, 1.0, 1.25, 1.5),
                   type=positive_float_tuple)
    g.add_argument('--seg_eval_flip', default=True, type=str2bool,
                   help='average with the horizontally flipped image')
    g.add_argument('--seg_crf', default=False, type=str2bool)
    g.add_argument('--seg_out_dir', default='seg_pred')
    g.add_argument('--seg_submission', default=False, type=str2bool,
                   help='also write results/VOC2012/Segmentation/comp6_test_cls/*.png')
    g.add_argument('--predict_images', default=None,
                   help='predict: folder or glob of new images to segment with '
                   '--seg_weights_name (eval_seg\'s --seg_eval_scales, --seg_eval_flip, --seg_crf)')
    g.add_argument('--predict_out_dir', default='predictions',
                   help='predict: masks/, color/, overlay/ and predictions.json')
    g.add_argument('--predict_batch_size', default=4, type=positive_int,
                   help='predict: images of the same size per forward pass')

    g = p.add_argument_group('weights and outputs (bare names live in work_space)')
    g.add_argument('--cam_weights_name', default='res50_cam.safetensors')
    g.add_argument('--clims_weights_name', default='res50_qa_clims.safetensors')
    g.add_argument('--cam_out_dir', default='cams')
    g.add_argument('--import_reference_cams', default=False, type=str2bool,
                   help='eval_cam, cam_to_ir_label and make_sem_seg read the authors\' pickled CAM '
                   '.npy dicts from --cam_out_dir instead of our .npz. Importing a pickle runs code '
                   'stored in the file: only import files from a trusted source')
    g.add_argument('--ir_label_out_dir', default='ir_label')
    g.add_argument('--sem_seg_out_dir', default='sem_seg')
    g.add_argument('--irn_weights_name', default='res50_irn.safetensors')

    g = p.add_argument_group('IRNet')
    g.add_argument('--conf_fg_thres', default=0.30, type=unit_interval,
                   help='above --conf_bg_thres')
    g.add_argument('--conf_bg_thres', default=0.10, type=unit_interval,
                   help='reference default 0.10 (IRNet used 0.05)')
    g.add_argument('--irn_backbone_weights', default=None,
                   help='initialise the IRNet backbone from a CAM checkpoint instead of '
                        '--imagenet_weights')
    g.add_argument('--irn_crop_size', default=512, type=irn_crop_size)
    g.add_argument('--irn_batch_size', default=32, type=positive_int, help='global batch')
    g.add_argument('--irn_num_epoches', default=3, type=positive_int)
    g.add_argument('--irn_learning_rate', default=0.1, type=float)
    g.add_argument('--irn_weight_decay', default=1e-4, type=float)
    g.add_argument('--irn_rescale', default=(0.5, 1.5), type=positive_float_tuple,
                   help='random rescale factor drawn uniformly in "MIN,MAX" (the reference '
                        'passes (0.5, 1.5); IRNet\'s own (0.5, 1.0, 1.5) means 0.5,1.0)')
    g.add_argument('--beta', default=10, type=float)
    g.add_argument('--exp_times', default=8, type=non_negative_int,
                   help='the random walk takes 2^exp_times steps')
    g.add_argument('--sem_seg_bg_thres', default=0.20, type=unit_interval,
                   help='reference default 0.20 (IRNet used 0.25)')
    g.add_argument('--sem_seg_color', default=False, type=str2bool,
                   help='also write VOC-palette pseudo masks to <sem_seg_out_dir>_color')

    g = p.add_argument_group('the reference\'s flags (accepted in its command lines; mapped or '
                             'refused, see resolve_args)')
    g.add_argument('--use_distributed_train', default=None, type=str2bool,
                   help='DDP follows the launcher (torchrun / torch.distributed.launch); True '
                   'needs one')
    g.add_argument('--local-rank', '--local_rank', dest='local_rank', default=None, type=int,
                   help='passed by torch.distributed.launch; must equal LOCAL_RANK')
    for flag in STAGE_NETWORK_FLAGS:
        g.add_argument('--' + flag, default=None, type=network_name,
                       help='accepted when it names the --cam_network family (the reference\'s '
                       'net.resnet50_clims, net.resnet50_irn name resnet50)')
    g.add_argument('--feature_dim', default=None, type=int,
                   help='accepted when it is the --cam_network\'s feature size (resnet50: 2048)')
    g.add_argument('--num_cores_eval', default=None, type=int,
                   help='no effect (the reference does not read it either)')

    g = p.add_argument_group('stages (run in this order)')
    for stage in STAGES:
        g.add_argument('--%s_pass' % stage, default=False, type=str2bool)
    return p


def launched_world_size():
    """Number of processes the launcher started (its WORLD_SIZE; 1 without one)."""
    return int(os.environ.get('WORLD_SIZE', '1'))


def check_reference_flags(args):
    """The reference's flags without a counterpart here: accepted when they
    describe what this code does, else a FlagError saying what to use.
    Returns notes for the log."""
    for flag in STAGE_NETWORK_FLAGS:
        value = getattr(args, flag)
        if value is not None and value != args.cam_network:
            raise FlagError('--%s %s: --cam_network (%s) picks the network of every stage; pass '
                            '--cam_network %s and drop --%s'
                            % (flag, value, args.cam_network, value, flag))
    feature_dim = cam_network(args.cam_network).feature_dim
    if args.feature_dim is not None and args.feature_dim != feature_dim:
        raise FlagError('--feature_dim %d: the features of --cam_network %s have %d channels; '
                        'drop --feature_dim' % (args.feature_dim, args.cam_network, feature_dim))
    launched = 'WORLD_SIZE' in os.environ
    if args.use_distributed_train and not launched:
        raise FlagError('--use_distributed_train True: start run_sample.py with torchrun '
                         '--nproc_per_node N (or python -m torch.distributed.launch), which runs '
                         'DDP; in one process drop --use_distributed_train')
    if args.use_distributed_train is False and launched_world_size() > 1:
        raise FlagError('--use_distributed_train False, but the launcher started %d processes: '
                         'drop the flag (DDP follows the launcher)' % launched_world_size())
    if args.local_rank is not None and str(args.local_rank) != os.environ.get('LOCAL_RANK'):
        raise FlagError('--local_rank %d does not match LOCAL_RANK=%s: --local_rank is for '
                         'torch.distributed.launch / torchrun to pass; drop it'
                         % (args.local_rank, os.environ.get('LOCAL_RANK', '(unset)')))
    notes = []
    if args.num_cores_eval is not None:
        notes.append('--num_cores_eval %d has no effect (the reference does not read it either)'
                     % args.num_cores_eval)
    return notes


def map_reference_list_paths(args):
    """The reference's list files (``voc12/train_aug.txt``, relative to its
    repository) are splits: a ``.txt`` list that does not exist becomes the
    split of its file name. Returns notes for the log."""
    notes = []
    for flag in REFERENCE_LIST_FLAGS:
        value = getattr(args, flag)
        if value and value.endswith('.txt') and not os.path.isfile(value):
            split = os.path.splitext(os.path.basename(value))[0]
            setattr(args, flag, split)
            notes.append('--%s %s: no such file; using the split %s' % (flag, value, split))
    return notes


def resolve_batch_sizes(args):
    """--cam_batch_size and --clims_batch_size; returns notes for the log.

    The reference's scripts pass ``--cam_batch_size 4`` as QA-CLIMS's
    per-process batch: with --train_qa_clims_pass and no --clims_batch_size it
    is honoured as such (global batch = 4 x processes); train_cam keeps it
    as its global batch.
    """
    notes = []
    if (args.clims_batch_size is None and args.cam_batch_size is not None
            and args.train_qa_clims_pass):
        args.clims_batch_size = args.cam_batch_size * launched_world_size()
        notes.append('--cam_batch_size %d is the per-process QA-CLIMS batch (the reference\'s '
                     'meaning): --clims_batch_size %d = %d x %d processes'
                     % (args.cam_batch_size, args.clims_batch_size, args.cam_batch_size,
                        launched_world_size()))
    if args.clims_batch_size is None:
        args.clims_batch_size = CLIMS_BATCH_SIZE
    if args.cam_batch_size is None:
        args.cam_batch_size = CAM_BATCH_SIZE
    return notes


def check_flag_combinations(args):
    """What one flag's type cannot check: the CAM and QA-CLIMS crops against the
    network's stride, the confident-region thresholds in order, the rescale range. A
    FlagError names the flags and what is allowed."""
    stride = cam_network(args.cam_network).stride
    for flag in ('cam_crop_size', 'clims_crop_size'):
        if getattr(args, flag) < stride:
            raise FlagError('argument --%s: expected an integer >= %d (the output stride of '
                            '--cam_network %s: a smaller crop is less than one feature cell), '
                            'got %r' % (flag, stride, args.cam_network, str(getattr(args, flag))))
    if args.conf_fg_thres <= args.conf_bg_thres:
        raise FlagError('--conf_fg_thres %s must be above --conf_bg_thres %s (both in [0, 1]): '
                        'the foreground threshold marks the confident foreground, the lower '
                        'background threshold the confident background'
                        % (args.conf_fg_thres, args.conf_bg_thres))
    rescale = args.irn_rescale
    if len(rescale) < 2 or rescale[0] > rescale[1]:
        raise FlagError('--irn_rescale %s: expected "MIN,MAX" with 0 < MIN <= MAX (a third value, '
                        'as in IRNet\'s (0.5, 1.0, 1.5), is ignored)'
                        % ','.join('%g' % v for v in rescale))


def fill_dataset_defaults(args):
    """Set every per-dataset flag left at None to the --dataset's value (data.registry);
    returns the {flag: value} filled."""
    filled = missing_dataset_defaults(args.dataset, vars(args))
    for flag, value in filled.items():
        setattr(args, flag, value)
    return filled


def resolve_args(args):
    """Complete parsed arguments in place: per-dataset defaults (data.registry),
    the reference's flags and list paths, batch sizes. Returns notes for the
    log; a refused flag or combination raises FlagError."""
    check_flag_combinations(args)
    filled = fill_dataset_defaults(args)
    notes = ['defaults of --dataset %s: %s' % (args.dataset, ', '.join(
        '--%s %s' % item for item in filled.items()))] if filled else []
    return (notes + check_reference_flags(args) + map_reference_list_paths(args)
            + resolve_batch_sizes(args))


def flag_values(args, flags):
    """The value of each flag (argparse dest) after the per-dataset defaults and batch
    sizes, as the shell reads it: lists comma-separated, None empty."""
    fill_dataset_defaults(args)
    resolve_batch_sizes(args)
    unknown = [flag for flag in flags if flag not in vars(args)]
    if unknown:
        raise FlagError('--print_defaults: no flag %s (give flag names without dashes, e.g. '
                        'clims_learning_rate)' % ', '.join(unknown))
    values = [getattr(args, flag) for flag in flags]
    return ['' if v is None else ','.join(map(str, v)) if isinstance(v, (tuple, list)) else str(v)
            for v in values]


def run_stages(args):
    """Run every selected stage in pipeline order; returns {stage: result}."""
    from misc import dist           # torch: imported only to run stages (not for --print_defaults)
    notes = resolve_args(args)
    os.makedirs(args.work_space, exist_ok=True)
    log = setup_logging(args.work_space, args.log_name, is_main=dist.is_main_process())
    for note in notes:
        log.info('run_sample: %s', note)
    if dist.is_main_process():
        with open(os.path.join(args.work_space, args.log_name + '_args.json'), 'w') as f:
            json.dump(vars(args), f, indent=1)
    results = {}
    for stage in STAGES:
        if not getattr(args, stage + '_pass'):
            continue
        start = time.time()
        log.info('=== %s', stage)
        module = STAGE_MODULES.get(stage, 'step.' + stage)
        results[stage] = importlib.import_module(module).run(args)
        log.info('=== %s done in %.1f s', stage, time.time() - start)
    return results


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.print_root_flag:
        print(dataset_entry(args.print_root_flag).root_flag)
        return
    if args.print_defaults:
        try:
            print('\n'.join(flag_values(args, args.print_defaults)))
        except FlagError as e:
            parser.error(str(e))
        return
    from misc import dist
    try:
        run_stages(args)
    except FlagError as e:
        parser.error(str(e))
    finally:
        release_outputs()
        dist.shutdown()


if __name__ == '__main__':
    main()
