"""The datasets the pipeline knows, in one place: how each is built from the
arguments and which flags take a per-dataset default.

The reference has one entry point per dataset (``run_sample.py`` for VOC,
``run_sample_coco.py`` + ``run_coco14_qa_clims.sh`` for COCO) with different
defaults; here ``--dataset`` picks the entry and ``run_sample.py`` fills every
flag of :attr:`DatasetEntry.defaults` the user did not pass (an explicit flag
always wins).
"""
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping


@dataclass(frozen=True)
class DatasetEntry:
    """``build(args)`` returns the :class:`data.base.SegmentationSource`;
    ``defaults`` maps flag names (argparse dests) to this dataset's value."""
    name: str
    build: Callable
    defaults: Mapping


def _build_voc12(args):
    from voc12.devkit import VOC12
    return VOC12(getattr(args, 'voc12_root', None))


def _build_coco14(args):
    from coco14.dataset import COCO14
    return COCO14(getattr(args, 'mscoco_root', None))


def _build_folder(args):
    from data.folder import FolderDataset
    return FolderDataset(getattr(args, 'data_root', None))


def _vqa_files(prefix):
    """FG/BG VQA results and their text-feature caches (run_*_qa_clims.sh names)."""
    return {'vqa_fg_file': '%s_vqa_fg_blip.json' % prefix,
            'vqa_bg_file': '%s_vqa_bg_blip.json' % prefix,
            'vqa_fg_cache_file': '%s_vqa_fg_blip_ViT-L-14_cache.safetensors' % prefix,
            'vqa_bg_cache_file': '%s_vqa_bg_blip_ViT-L-14_cache.safetensors' % prefix}


DATASETS = MappingProxyType({
    # run_sample.py / run_voc12_qa_clims.sh
    'voc12': DatasetEntry('voc12', _build_voc12, MappingProxyType(dict(
        train_list='train_aug', infer_list='train_aug', seg_train_list='train_aug',
        clims_learning_rate=3.5e-4, hyper='10,8,0.2',
        **_vqa_files('voc')))),
    # run_coco14_qa_clims.sh (LR=0.00001, HYPER=30,24,0.2; run_sample_coco.py's default hyper)
    'coco14': DatasetEntry('coco14', _build_coco14, MappingProxyType(dict(
        train_list='train', infer_list='train', seg_train_list='train',
        clims_learning_rate=1e-5, hyper='30,24,0.2',
        **_vqa_files('coco')))),
    # your own data (data/folder.py): every labelled image is in train unless
    # splits/train.txt says otherwise; VOC's QA-CLIMS recipe
    'folder': DatasetEntry('folder', _build_folder, MappingProxyType(dict(
        train_list='train', infer_list='train', seg_train_list='train',
        clims_learning_rate=3.5e-4, hyper='10,8,0.2',
        **_vqa_files('folder')))),
})


def dataset_entry(name):
    """The registry entry of ``--dataset NAME``; a clear error for an unknown name."""
    if name not in DATASETS:
        raise ValueError('unknown --dataset %r (available: %s)' % (name, ', '.join(DATASETS)))
    return DATASETS[name]


def per_dataset_help(flag):
    """Help text of a flag with per-dataset defaults, e.g. 'voc12: 0.00035, coco14: 1e-05'."""
    return 'default per --dataset: ' + ', '.join(
        '%s %s' % (name, entry.defaults[flag]) for name, entry in DATASETS.items())


def fill_dataset_defaults(args):
    """Set every per-dataset flag left at None to the dataset's value; returns the
    {flag: value} filled."""
    filled = {}
    for flag, value in dataset_entry(args.dataset).defaults.items():
        if getattr(args, flag, None) is None:
            setattr(args, flag, value)
            filled[flag] = value
    return filled
