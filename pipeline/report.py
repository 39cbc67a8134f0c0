"""Evaluation results: the common fields of the evaluation JSONs (docs/formats.md)
and human-readable tables of them."""
import math

from wsss.metrics import mean_iou


def evaluated(source, split, n_images):
    """The fields every evaluation JSON starts with: what was scored."""
    return {'dataset': source.name, 'split': split, 'n_images': n_images}


def class_scores(iou, label_names):
    """mIoU (nanmean), IoU per class id and per class name of an IoU vector."""
    return {'miou': mean_iou(iou), 'iou': iou.tolist(),
            'iou_by_class': dict(zip(label_names, iou.tolist()))}


def is_absent(value):
    return value is None or math.isnan(value)


def iou_table(label_names, iou, miou, title='mIoU', skip_absent=False):
    """Two-column text table: class name, IoU in percent ('-' where absent).

    ``skip_absent`` leaves out the classes absent from both prediction and GT.
    """
    width = max(len(n) for n in label_names) + 2
    lines = ['%-*s %7s' % (width, 'class', 'IoU %')]
    for name, value in zip(label_names, iou):
        if skip_absent and is_absent(value):
            continue
        shown = '-' if is_absent(value) else '%.2f' % (100 * value)
        lines.append('%-*s %7s' % (width, name, shown))
    lines.append('%-*s %7.2f' % (width, title, 100 * miou))
    return '\n'.join(lines)


def comparison_table(label_names, columns, skip_absent=True):
    """Per-class IoU (%) of several results side by side, with an mIoU row.

    ``columns``: list of (title, iou list, miou). A class is left out when
    ``skip_absent`` and it is absent from every column.
    """
    width = max(len(n) for n in label_names) + 2
    col = max(10, max(len(title) for title, _, _ in columns) + 2)
    lines = ['%-*s' % (width, 'class') + ''.join('%*s' % (col, t) for t, _, _ in columns)]
    for k, name in enumerate(label_names):
        values = [iou[k] for _, iou, _ in columns]
        if skip_absent and all(is_absent(v) for v in values):
            continue
        lines.append('%-*s' % (width, name) + ''.join(
            '%*s' % (col, '-' if is_absent(v) else '%.2f' % (100 * v)) for v in values))
    lines.append('%-*s' % (width, 'mIoU') + ''.join('%*.2f' % (col, 100 * m)
                                                    for _, _, m in columns))
    return '\n'.join(lines)
