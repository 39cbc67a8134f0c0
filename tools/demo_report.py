"""The demo's report page (README: the demo): one static HTML file, no script.

It holds the IoU tables of results.json, the stage times, a colour legend
naming the classes and, for a few images, the tiles
image | baseline CAM | QA-CLIMS CAM | pseudo mask | segmentation | ground truth
(each at least TILE_MIN px on its short side). The tiles are PNGs in
``<out>/panels/<id>/`` beside one PNG row per image ``<out>/panels/<id>.png``.
"""
import html
import os

import numpy as np
from PIL import Image

from misc.io import atomic_write, load_npz, per_image_file, read_label_png, save_png
from wsss.metrics import cam_to_label
from pipeline.paths import in_work_space
from step.eval_seg import final_prediction_dir
from tools.train_tiny_clip import accuracy_summary
from tools.visualize import colorize_label, side_by_side

TILE_MIN = 256
COLUMNS = ('image', 'baseline CAM', 'QA-CLIMS CAM', 'pseudo mask', 'segmentation',
           'ground truth')
VOID = 255


def enlarged(tile, is_label):
    """The tile scaled so that its short side is at least TILE_MIN (labels: nearest)."""
    h, w = tile.shape[:2]
    scale = max(1.0, TILE_MIN / min(h, w))
    size = (int(np.ceil(w * scale)), int(np.ceil(h * scale)))
    mode = Image.NEAREST if is_label else Image.BILINEAR
    return np.asarray(Image.fromarray(tile).resize(size, mode))


def cam_labels(cam_dir, image_id, threshold):
    cams = load_npz(per_image_file(cam_dir, image_id, '.npz'), required=('keys', 'high_res'))
    return cam_to_label(cams['high_res'], cams['keys'], threshold)


def label_png(folder, image_id):
    return read_label_png(per_image_file(folder, image_id, '.png'))


def stage_label_maps(source, image_id, args, baseline_cams):
    """Label maps of one image for the columns after 'image', in COLUMNS order
    (``args``: the QA-CLIMS run's; ``baseline_cams``: the baseline's CAM folder name)."""
    thr = args.cam_eval_thres
    return [cam_labels(in_work_space(args.work_space, baseline_cams), image_id, thr),
            cam_labels(in_work_space(args.work_space, args.cam_out_dir), image_id, thr),
            label_png(in_work_space(args.work_space, args.sem_seg_out_dir), image_id),
            label_png(final_prediction_dir(args), image_id),   # what the row scores
            source.read_mask(image_id)]


def write_panels(source, ids, args, baseline_cams, out):
    """Tiles and one row PNG per image; returns [(image id, [tile paths], row path)]."""
    panels = []
    for image_id in ids:
        tiles = [enlarged(source.read_image(image_id), False)]
        tiles += [enlarged(colorize_label(m, source.palette), True)
                  for m in stage_label_maps(source, image_id, args, baseline_cams)]
        folder = os.path.join(out, 'panels', image_id)
        paths = []
        for name, tile in zip(COLUMNS, tiles):
            paths.append(os.path.join(folder, name.replace(' ', '_').replace('-', '_') + '.png'))
            save_png(paths[-1], tile)
        row_path = per_image_file(os.path.join(out, 'panels'), image_id, '.png')
        save_png(row_path, side_by_side(tiles))
        panels.append((image_id, paths, row_path))
    return panels


def legend_html(source, shown):
    """Colour swatches naming the classes ``shown`` (background first) and void."""
    colours = np.array(source.palette, np.uint8).reshape(-1, 3)
    entries = [(k, n) for k, n in enumerate(source.label_names) if n in shown]
    entries.append((VOID, 'void (ignored)'))
    items = ['<span class="swatch"><span style="background: rgb(%d,%d,%d)"></span>%s</span>'
             % (tuple(colours[k]) + (html.escape(n),)) for k, n in entries]
    return '<p class="legend">%s</p>' % ' '.join(items)


def percent(value):
    return '-' if value is None else '%.1f' % (100 * value)


def iou_table_html(rows, names):
    """Per-class IoU (%) of several results.json rows (title, row dict) and their mIoU."""
    present = [n for n in names if any(n in r['iou'] for _, r in rows)]
    head = ''.join('<th>%s</th>' % html.escape(t) for t, _ in rows)
    body = ''.join('<tr><td>%s</td>%s</tr>' % (html.escape(n), ''.join(
        '<td>%s</td>' % percent(r['iou'].get(n)) for _, r in rows)) for n in present)
    body += '<tr class="miou"><td>mIoU</td>%s</tr>' % ''.join(
        '<td>%s</td>' % percent(r['miou']) for _, r in rows)
    return '<table><tr><th>class</th>%s</tr>%s</table>' % (head, body)


def times_html(times):
    rows = ''.join('<tr><td>%s</td><td>%.1f</td></tr>' % (html.escape(k), v)
                   for k, v in times.items())
    return '<table><tr><th>stage</th><th>seconds</th></tr>%s<tr class="miou"><td>total</td>' \
           '<td>%.1f</td></tr></table>' % (rows, sum(times.values()))


def panels_html(panels, page_dir):
    head = ''.join('<th>%s</th>' % html.escape(c) for c in COLUMNS)
    rows = ''.join('<tr>%s</tr>' % ''.join(
        '<td><img src="%s" alt="%s %s"></td>' % (html.escape(os.path.relpath(p, page_dir)),
                                                 html.escape(image_id), html.escape(c))
        for c, p in zip(COLUMNS, paths)) for image_id, paths, _ in panels)
    return '<table class="panels"><tr>%s</tr>%s</table>' % (head, rows)


STYLE = '''body { font-family: sans-serif; margin: 2em; max-width: 110em; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #bbb; padding: 0.2em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.miou { font-weight: bold; }
table.panels td { padding: 2px; }
table.panels img { display: block; }
.swatch { display: inline-block; margin-right: 1.2em; }
.swatch span { display: inline-block; width: 1em; height: 1em; margin-right: 0.3em;
  vertical-align: middle; border: 1px solid #555; }'''


def train_rows(results):
    """(title, results.json row) of the train split, the random-CLIP ablation when run."""
    rows = [('baseline CAM', results['baseline_cam'])]
    if 'qa_clims_cam_random_clip' in results:
        rows.append(('QA-CLIMS CAM, random CLIP', results['qa_clims_cam_random_clip']))
    return rows + [('QA-CLIMS CAM', results['qa_clims_cam']),
                   ('pseudo mask', results['pseudo_mask'])]


def write_report(path, source, results, panels):
    """Write the page; returns its path."""
    names = source.label_names
    clip = results['clip']['clip']
    clip_line = 'The tiny CLIP\'s zero-shot accuracy: %s.' % accuracy_summary(clip)
    page = '''<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>QA-CLIMS demo, seed %(seed)d</title>
<style>%(style)s</style></head><body>
<h1>QA-CLIMS demo on a synthetic world (seed %(seed)d)</h1>
<p>Synthetic images whose classes co-occur with their own background regions (which also
show up without them) and carry a small discriminative part; a tiny CLIP trained on that
world; backbones pretrained on it in place of ImageNet. These numbers show the method's
mechanism at work, not the paper's VOC numbers.
%(clip)s</p>
<h2>Train split (%(n_train)d images): CAMs and pseudo masks</h2>%(train)s
<p>Pseudo-mask background IoU: %(bg)s%%.</p>
<h2>Val split (%(n_val)d images): segmentation network trained on the pseudo masks</h2>
<p>Scored as the recipe scores it: predictions refined by a dense CRF (and without it).</p>%(val)s
<h2>Stage times</h2>%(times)s
<h2>Panels (val images)</h2>%(legend)s%(panels)s
</body></html>
''' % {'seed': results['seed'], 'style': STYLE, 'clip': html.escape(clip_line),
       'n_train': results['n_train_images'], 'n_val': results['segmentation']['n_images'],
       'train': iou_table_html(train_rows(results), names),
       'bg': percent(results['pseudo_mask']['background_iou']),
       'val': iou_table_html([('segmentation', results['segmentation']),
                              ('without CRF', results['segmentation_without_crf'])], names),
       'times': times_html(results['times']),
       'legend': legend_html(source, set(results['pseudo_mask']['iou'])
                             | set(results['segmentation']['iou'])),
       'panels': panels_html(panels, os.path.dirname(os.path.abspath(path)))}
    with atomic_write(path, 'w') as f:
        f.write(page)
    return path
