"""The datasets the pipeline knows, in one place: how each is built from the
arguments, its classes (names, count, text aliases), its palette and which
flags take a per-dataset default.

Adding a dataset: write its reader (a :class:`data.base.SegmentationSource`
subclass in its own package, like ``voc12/`` or ``coco14/``) and add one
:class:`DatasetEntry` to :data:`DATASETS`: ``build`` (a function of the
dataset folder and the work space that imports the reader and opens the
folder; the flag ``root_flag`` gives the folder), the class names in
class-id order (``None`` when the data names its own classes, as a folder
dataset does), the text aliases, the palette and the defaults. ``--dataset
NAME`` then works for every stage, the flows and the tools; the reader takes its class names, aliases and palette
from its entry (``VOC12.class_names = DATASETS['voc12'].class_names``).

The reference has one entry point per dataset (``run_sample.py`` for VOC,
``run_sample_coco.py`` + ``run_coco14_qa_clims.sh`` for COCO) with different
defaults; here ``--dataset`` picks the entry and ``run_sample.py`` fills every
flag of :attr:`DatasetEntry.defaults` the user did not pass (an explicit flag
always wins).
"""
import os
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping, Optional

from misc.palette import color_map

# The reference's ``supply_cat`` (net/vqa_fg.py): names that count as the class in an FG
# answer. The reference applies it to every dataset; on COCO it matters for 'dining table'
# and 'potted plant'.
REFERENCE_TEXT_ALIASES = MappingProxyType({
    'dining table': ('table', 'dining table'), 'tv monitor': ('monitor', 'tv monitor'),
    'potted plant': ('plant', 'potted plant')})

VOC12_CLASS_NAMES = (
    'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
    'dining table', 'dog', 'horse', 'motorbike', 'person', 'potted plant', 'sheep', 'sofa',
    'train', 'tv monitor')
# COCO's 80 categories in the standard contiguous order (the authors' category_dict['coco']).
COCO14_CLASS_NAMES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
    'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog',
    'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella',
    'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite',
    'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket', 'bottle',
    'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange',
    'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant',
    'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote', 'keyboard', 'cell phone',
    'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase', 'scissors',
    'teddy bear', 'hair drier', 'toothbrush')


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset.

    ``build(root, work_space=None)`` returns its :class:`data.base.SegmentationSource`
    opened at ``root``, the folder the flag ``root_flag`` gives (``work_space``: where it
    may cache what it derives from its files). ``class_names``: the names on
    the text side (VQA questions, CLIP prompts) in class-id order, background
    excluded (``None``: the data names its classes). ``text_aliases``: {class
    name: names that count as the class in an FG answer} (``None``: the data
    gives them). ``palette``: flat [r, g, b, ...] colours of the class ids in
    colour PNGs. ``short_name``: the reference's name of the dataset, which
    prefixes the VQA file names (``voc_vqa_fg_blip.json``).
    ``defaults``: {flag (argparse dest): this dataset's value}.
    """
    name: str
    build: Callable
    root_flag: str
    class_names: Optional[tuple]
    text_aliases: Optional[Mapping]
    palette: tuple
    short_name: str
    defaults: Mapping

    @property
    def n_classes(self):
        """Number of foreground classes (None when the data names its classes)."""
        return None if self.class_names is None else len(self.class_names)


def _build_voc12(root, work_space=None):
    from voc12.devkit import VOC12
    return VOC12(root)


def _build_coco14(root, work_space=None):
    """COCO's masks rendered from the annotations are cached in the work space."""
    from coco14.dataset import COCO14
    return COCO14(root, mask_cache=os.path.join(work_space, 'coco_masks') if work_space else None)


def _build_folder(root, work_space=None):
    from data.folder import FolderDataset
    return FolderDataset(root)


def _vqa_files(short_name):
    """FG/BG VQA results and their text-feature caches (run_*_qa_clims.sh names)."""
    return {'vqa_fg_file': '%s_vqa_fg_blip.json' % short_name,
            'vqa_bg_file': '%s_vqa_bg_blip.json' % short_name,
            'vqa_fg_cache_file': '%s_vqa_fg_blip_ViT-L-14_cache.safetensors' % short_name,
            'vqa_bg_cache_file': '%s_vqa_bg_blip_ViT-L-14_cache.safetensors' % short_name}


def _entry(name, build, root_flag, class_names, text_aliases, short_name, **defaults):
    return DatasetEntry(name, build, root_flag, class_names, text_aliases, tuple(color_map()),
                        short_name, MappingProxyType(dict(defaults, **_vqa_files(short_name))))


DATASETS = MappingProxyType({
    # run_sample.py / run_voc12_qa_clims.sh
    'voc12': _entry('voc12', _build_voc12, 'voc12_root', VOC12_CLASS_NAMES,
                    REFERENCE_TEXT_ALIASES, 'voc', train_list='train_aug', infer_list='train_aug',
                    seg_train_list='train_aug', clims_learning_rate=3.5e-4, hyper='10,8,0.2'),
    # the reference's run_coco14_qa_clims.sh (LR=0.00001, HYPER=30,24,0.2; run_sample_coco.py's
    # default hyper).
    # COCO has no palette of its own: the generic 256-colour map of misc/palette.py.
    'coco14': _entry('coco14', _build_coco14, 'mscoco_root', COCO14_CLASS_NAMES,
                     REFERENCE_TEXT_ALIASES, 'coco', train_list='train', infer_list='train',
                     seg_train_list='train', clims_learning_rate=1e-5, hyper='30,24,0.2'),
    # your own data (data/folder.py): classes and aliases from its classes.txt; every
    # labelled image is in train unless splits/train.txt says otherwise; VOC's QA-CLIMS recipe
    'folder': _entry('folder', _build_folder, 'data_root', None, None, 'folder',
                     train_list='train', infer_list='train', seg_train_list='train',
                     clims_learning_rate=3.5e-4, hyper='10,8,0.2'),
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


def missing_dataset_defaults(name, given):
    """{flag: dataset ``name``'s value} of each per-dataset flag whose value in
    ``given`` ({flag: value}) is None."""
    return {flag: value for flag, value in dataset_entry(name).defaults.items()
            if given.get(flag) is None}
