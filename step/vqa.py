"""Question-answer prompt engineering (docs/method.md#vqa-answers): BLIP VQA answers.

For every image of ``--vqa_list`` and every class present, the 6 FG and 10
BG questions are answered by BLIP (:class:`vqa.blip.BlipVQA`, batched over
images and questions; the first question token is [ENC] as the reference
BLIP, or [CLS] with ``--vqa_question_bos cls``), each answer is lemmatised
as a noun, and the results are written in the reference schema as two JSON
files (``--vqa_fg_file``, ``--vqa_bg_file``) that
``tools/gen_text_feats_cache.py`` and ``train_qa_clims`` read. One part file
per image in ``--vqa_parts_dir`` makes the step resumable (nothing is asked
twice; parts written with other settings are refused) and lets torchrun
processes share the work; the main process merges the parts. The
``.meta.json`` beside each result file records the model, the lemmatiser and
the settings (``question_bos`` included).
"""
import io
import os

import numpy as np
from tqdm import tqdm

from misc import dist
from misc.io import atomic_write, load_json, per_image_file, save_json
from misc.logutil import get_logger
from misc.torchutils import FLOAT_DTYPES
from pipeline.paths import in_work_space
from pipeline.stage import pending_shard, prepare
from vqa.blip import BlipVQA
from vqa.lemmatize import make_lemmatizer
from vqa.results import BG_QUESTIONS, FG_QUESTIONS, validate_results



def class_questions(class_name, class_names):
    """The 16 questions (6 FG, then 10 BG) about one class of the dataset."""
    if class_name not in class_names:
        raise ValueError('class %r is not a class of the dataset (%s)'
                         % (class_name, ', '.join(class_names)))
    return [q.format(class_name) for q in FG_QUESTIONS + BG_QUESTIONS]


def image_entries(class_names, answers, lemmatize):
    """({class: FG entry}, {class: BG entry}) from the 16 answers of each class."""
    fg, bg = {}, {}
    for name, ans in zip(class_names, answers):
        for table, templates, part in ((fg, FG_QUESTIONS, ans[:6]), (bg, BG_QUESTIONS, ans[6:])):
            table[name] = {'vqa': [[q, a] for q, a in zip(templates, part)],
                           'answers': [lemmatize(a) for a in part]}
    return fg, bg


def answer_images(model, source, ids, parts_dir, lemmatize, settings, batch_size, progress):
    """Ask every question about ``ids`` in batches of images; one part file per image,
    with the ``settings`` that made it."""
    names = source.class_names
    for start in tqdm(range(0, len(ids), batch_size), desc='vqa', disable=not progress,
                      dynamic_ncols=True):
        batch = ids[start:start + batch_size]
        images = [source.read_image(i) for i in batch]
        classes = [[names[c] for c in source.image_label_ids(i)] for i in batch]
        questions = [[q for name in cls for q in class_questions(name, names)] for cls in classes]
        answers = model.answer(images, questions)
        for image_id, cls, ans in zip(batch, classes, answers):
            per_class = [ans[16 * k:16 * (k + 1)] for k in range(len(cls))]
            fg, bg = image_entries(cls, per_class, lemmatize)
            save_json(per_image_file(parts_dir, image_id, '.json'),
                      {'fg': fg, 'bg': bg, 'settings': settings})


def require_same_settings(ids, parts_dir, settings):
    """Refuse to resume from part files written with other settings (model settings and
    lemmatiser): the results would mix the answers of both."""
    for image_id in ids:
        path = per_image_file(parts_dir, image_id, '.json')
        made = load_json(path).get('settings', {})
        differ = sorted(k for k in set(made) | set(settings) if made.get(k) != settings.get(k))
        if differ:
            raise ValueError('%s was written with other VQA settings (%s) than this run (%s): '
                             'delete %s to answer again, or run with the same flags'
                             % (path, ', '.join('%s=%s' % (k, made.get(k)) for k in differ),
                                ', '.join('%s=%s' % (k, settings.get(k)) for k in differ),
                                parts_dir))


def merge_parts(ids, parts_dir, fg_path, bg_path, meta):
    """The two result files from the part files (sorted, atomically) + a meta sidecar."""
    fg, bg = {}, {}
    for image_id in sorted(ids):
        part = load_json(per_image_file(parts_dir, image_id, '.json'))
        fg[image_id], bg[image_id] = part['fg'], part['bg']
    for results, path in ((fg, fg_path), (bg, bg_path)):
        validate_results(results, path)
        save_json(path, results)
        save_json(os.path.splitext(path)[0] + '.meta.json', meta)
    return fg, bg


def export_reference_npy(results, path):
    """The reference's pickled ``.npy`` dict (tuples for the (question, answer) pairs)."""
    data = {i: {c: {'vqa': [tuple(qa) for qa in e['vqa']], 'answers': list(e['answers'])}
                for c, e in per_class.items()} for i, per_class in results.items()}
    buf = io.BytesIO()
    np.save(buf, data, allow_pickle=True)
    with atomic_write(path) as f:
        f.write(buf.getvalue())


def run(args):
    log = get_logger()
    device, source, ids = prepare(args, args.vqa_list or args.train_list)
    parts_dir = in_work_space(args.work_space, args.vqa_parts_dir)
    todo, shard = pending_shard(ids, parts_dir, '.json')
    lemmatizer_name, lemmatize = make_lemmatizer(args.vqa_lemmatizer)
    log.info('vqa: %d images, %d done, %d in this process (model %s, lemmatiser %s)',
             len(ids), len(ids) - len(todo), len(shard), args.vqa_model, lemmatizer_name)
    model = BlipVQA(args.vqa_model, device, FLOAT_DTYPES[args.vqa_dtype], args.vqa_image_size,
                    args.vqa_num_beams, args.vqa_max_length, args.vqa_min_length,
                    args.vqa_question_bos)
    settings = dict(model.settings(), lemmatizer=lemmatizer_name)
    pending = set(todo)
    require_same_settings([i for i in ids if i not in pending], parts_dir, settings)
    if shard:
        answer_images(model, source, shard, parts_dir, lemmatize, settings, args.vqa_batch_size,
                      dist.is_main_process())
    dist.barrier()
    if dist.is_main_process():
        fg_path = in_work_space(args.work_space, args.vqa_fg_file)
        bg_path = in_work_space(args.work_space, args.vqa_bg_file)
        meta = {'model': args.vqa_model, 'list': args.vqa_list or args.train_list,
                'n_images': len(ids), **settings}
        fg, bg = merge_parts(ids, parts_dir, fg_path, bg_path, meta)
        if args.vqa_export_npy:
            for results, path in ((fg, fg_path), (bg, bg_path)):
                export_reference_npy(results, os.path.splitext(path)[0] + '.npy')
        log.info('vqa: -> %s, %s', fg_path, bg_path)
    dist.barrier()
