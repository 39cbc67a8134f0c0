"""Human-readable tables of evaluation results."""
import math


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
