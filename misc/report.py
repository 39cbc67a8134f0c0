"""Human-readable tables of evaluation results."""
import math


def iou_table(label_names, iou, miou, title='mIoU'):
    """Two-column text table: class name, IoU in percent ('-' where absent)."""
    width = max(len(n) for n in label_names) + 2
    lines = ['%-*s %7s' % (width, 'class', 'IoU %')]
    for name, value in zip(label_names, iou):
        shown = '-' if value is None or math.isnan(value) else '%.2f' % (100 * value)
        lines.append('%-*s %7s' % (width, name, shown))
    lines.append('%-*s %7.2f' % (width, title, 100 * miou))
    return '\n'.join(lines)
