"""A VOC-layout dataset (VOC 2012, or the demo generator's output) as a folder dataset.

    python tools/voc_to_folder.py --voc_root demo_out/VOC2012 --out my_data [--labels csv|json]

Writes ``--out`` in the layout of ``data/folder.py``: ``images/`` (the JPEGs,
byte for byte), ``classes.txt`` (VOC's 20 class names in VOC's order, with
the reference's aliases), ``labels.csv`` or ``labels.json`` (the classes of
the XML annotations), ``splits/<name>.txt`` (every list of
``ImageSets/Segmentation``) and ``masks/<id>.png`` (the masks there are,
VOC's or the SBD ones). The images converted are those of the split lists.
With ``--dataset folder --data_root <out>`` every stage gives the same CAMs
and scores as ``--dataset voc12 --voc12_root <voc_root>``.
"""
import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data.folder import write_classes, write_labels  # noqa: E402
from voc12.devkit import VOC12  # noqa: E402


def split_lists(source):
    """{split name: ids} of every list in ImageSets/Segmentation."""
    folder = os.path.join(source.root, 'ImageSets', 'Segmentation')
    names = sorted(n[:-4] for n in os.listdir(folder) if n.endswith('.txt')) \
        if os.path.isdir(folder) else []
    if not names:
        raise FileNotFoundError('%s has no split lists (*.txt): nothing to convert' % folder)
    return {name: source.split_ids(name) for name in names}


def prompt_aliases(source):
    """{class name: its aliases other than the name} of the source."""
    return {name: tuple(a for a in source.class_aliases.get(name, ()) if a != name)
            for name in source.class_names}


def copy_file(src, dst):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copyfile(src, dst)


def convert(voc_root, out, labels_format='csv'):
    """Write the folder dataset; returns {'ids', 'splits', 'masks'} (what was written)."""
    source = VOC12(voc_root)
    splits = split_lists(source)
    ids = sorted(set(i for listed in splits.values() for i in listed))
    write_classes(os.path.join(out, 'classes.txt'), source.class_names, prompt_aliases(source))
    write_labels(os.path.join(out, 'labels.' + labels_format),
                 {i: [source.class_names[c] for c in source.image_label_ids(i)] for i in ids})
    for name, listed in splits.items():
        copy_file(os.path.join(source.root, 'ImageSets', 'Segmentation', name + '.txt'),
                  os.path.join(out, 'splits', name + '.txt'))
    masks = []
    for image_id in ids:
        copy_file(source.image_path(image_id), os.path.join(out, 'images', image_id + '.jpg'))
        if source.has_mask(image_id):
            copy_file(source.mask_path(image_id), os.path.join(out, 'masks', image_id + '.png'))
            masks.append(image_id)
    return {'ids': ids, 'splits': sorted(splits), 'masks': masks}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--voc_root', required=True, help='the VOC-layout folder (VOC2012)')
    p.add_argument('--out', required=True, help='the folder dataset to write')
    p.add_argument('--labels', default='csv', choices=['csv', 'json'],
                   help='labels.csv or labels.json')
    a = p.parse_args(argv)
    done = convert(a.voc_root, a.out, a.labels)
    print('%d images (%d with masks), splits %s -> %s' % (
        len(done['ids']), len(done['masks']), ', '.join(done['splits']), a.out))


if __name__ == '__main__':
    main()
