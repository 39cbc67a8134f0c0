"""VQA results: ``{image_id: {class_name: {"vqa": [[q, a], ...], "answers": [lemma, ...]}}}``.

Our files are JSON in the reference schema. The authors' ``voc_vqa_*_blip.npy``
files are pickles and are read only through :func:`import_reference_npy`,
which a user calls explicitly (``--import_reference_npy``).
"""
import json
import os

import numpy as np

from misc.io import save_json

FG_QUESTIONS = (
    'What kind of {} is in the photo?', 'What type of {} is in the photo?',
    'What is this {} also called?', 'What is this {} usually called?',
    'What is another word for this {}?', 'What is another name for this {}?')
BG_QUESTIONS = (
    'what is above the {}?', 'what is under the {}?', 'what is behind the {}?',
    'what is around the {}?', 'what is next to the {}?', 'what is the left side of {}?',
    'what is the right side of {}?', 'what scene is the {} in?',
    'what environment is the {} in?', 'what place is the {} in?')
QUESTIONS = {'fg': FG_QUESTIONS, 'bg': BG_QUESTIONS}


def validate_results(results, path, class_names=None):
    """Check the schema; a clear error names the file and the first bad entry."""
    if not isinstance(results, dict):
        raise ValueError('%s: VQA results must be a JSON object {image_id: {class: ...}}' % path)
    for image_id, per_class in results.items():
        if not isinstance(per_class, dict):
            raise ValueError('%s: entry %s is not an object of classes' % (path, image_id))
        for name, entry in per_class.items():
            if class_names is not None and name not in class_names:
                raise ValueError('%s: %s has class %r, not a class of the dataset %s'
                                 % (path, image_id, name, sorted(class_names)))
            answers = entry.get('answers') if isinstance(entry, dict) else None
            if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
                raise ValueError('%s: %s / %s lacks a list of "answers" strings'
                                 % (path, image_id, name))
            if not is_question_answer_list(entry.get('vqa')):
                raise ValueError('%s: %s / %s lacks a "vqa" list of [question, answer] strings'
                                 % (path, image_id, name))
    return results


def is_question_answer_list(pairs):
    return isinstance(pairs, list) and all(
        isinstance(qa, (list, tuple)) and len(qa) == 2 and all(isinstance(s, str) for s in qa)
        for qa in pairs)


def load_results(path, class_names=None):
    """Our JSON VQA results file."""
    if not os.path.isfile(path):
        raise FileNotFoundError('VQA results %s do not exist (generate them with the VQA step, '
                                'or import the authors\' .npy with --import_reference_npy)' % path)
    if path.endswith('.npy'):
        raise ValueError('%s is a pickled .npy; it is read only on request: pass '
                         '--import_reference_npy to convert it to JSON once' % path)
    with open(path) as f:
        try:
            results = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError('%s is not valid JSON (%s)' % (path, e)) from None
    return validate_results(results, path, class_names)


def import_reference_npy(npy_path, json_path):
    """Convert the authors' pickled VQA results to our JSON (explicit user request only)."""
    raw = np.load(npy_path, allow_pickle=True).item()
    results = {str(image_id): {str(name): {'vqa': [[str(q), str(a)] for q, a in entry['vqa']],
                                            'answers': [str(a) for a in entry['answers']]}
                               for name, entry in per_class.items()}
               for image_id, per_class in raw.items()}
    validate_results(results, npy_path)
    save_json(json_path, results)
    return results


def first_entry(results, source):
    """(image_id, class_name, entry) of the first entry in file order (the reference's
    ``list(list(results.values())[0].values())[0]``, skipping images without classes)."""
    for image_id, per_class in results.items():
        for name, entry in per_class.items():
            return image_id, name, entry
    raise ValueError('%s has no (image, class) entry: generate the VQA answers with the VQA step'
                     % source)


def template_positions(results, templates, source):
    """Position of each question template in the ``vqa`` list of the file's first entry.

    The reference (``net/vqa_fg.py``, ``net/vqa_bg.py``) finds the templates
    (``list.index``: the first occurrence) in the questions of that one entry
    and reads the ``answers`` of EVERY entry at those positions. A template
    the entry does not ask is an error there (``ValueError``) and here.
    """
    image_id, name, entry = first_entry(results, source)
    questions = [q for q, _ in entry['vqa']]
    missing = [t for t in templates if t not in questions]
    if missing:
        raise ValueError('%s: the first entry (%s / %s) does not ask %d of the %d questions, first '
                         '%r; the answers are selected by the position of each question in its '
                         '"vqa" list: regenerate the VQA answers with the VQA step'
                         % (source, image_id, name, len(missing), len(templates), missing[0]))
    return [questions.index(t) for t in templates]


def missing_entries(results, pairs):
    """The (image_id, class_name) pairs that have no VQA entry."""
    return [(i, c) for i, c in pairs if c not in results.get(i, {})]
