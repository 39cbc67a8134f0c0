"""Text features of the VQA answers (docs/method.md#text-features).

A cache maps each distinct answer text to its L2-normalised CLIP text feature
of ``prompt.format(text)``. It is one safetensors file: tensor ``features``
[N, D] and metadata (JSON strings) ``texts``, ``kind`` (fg/bg), ``prompt``,
``clip_name`` and ``clip_sha256`` (the checksum of the CLIP weights that
made it). A cache is refused by a run that uses other CLIP weights.
"""
import json
import os

import torch
from safetensors import safe_open

from misc.io import atomic_write, safetensors_bytes
from vqa.results import QUESTIONS, template_positions

PROMPT = 'a photo of {}.'


def fg_prompted_answers(class_name, answers, aliases):
    """FG answers with the class name appended where none of its names occurs.

    A plain substring test as the reference (``cat`` is found in ``category``).
    ``aliases`` maps a class name to the names that count as it (the dataset's
    text aliases: its :mod:`data.registry` entry's, the reference's
    ``supply_cat`` on VOC and COCO, or a folder dataset's ``classes.txt``); a
    class without an entry counts as itself only.
    """
    names = aliases.get(class_name, (class_name,))
    return [a if any(n in a for n in names) else '%s %s' % (a, class_name) for a in answers]


def bg_answers(class_name, answers):
    """Distinct BG answers (first-occurrence order) without the class name itself."""
    return [a for a in dict.fromkeys(answers) if a != class_name]


def answer_selector(results, kind, source=None):
    """``select(image_id, class_name)`` -> the answers of that entry the reference uses.

    ``kind`` 'fg' or 'bg'; ``source`` names the results in errors (default: the
    flag). The answers are read from each entry's ``answers`` (the lemmas) at
    the positions the question templates have in the ``vqa`` list of the
    file's first entry (:func:`vqa.results.template_positions`); pairs whose
    question is not a template are ignored. As the reference:

    * FG (``net/vqa_fg.py``): one answer per template, in template order,
      repeated answers kept; an entry without an answer at a template's
      position is an error (an ``IndexError`` there);
    * BG (``net/vqa_bg.py``): the answers at those positions in the entry's
      order, each position once; a position past the end of ``answers`` adds
      nothing (its ``range(len(answers))`` filter). :func:`bg_answers` then
      de-duplicates them.

    Each entry must ask the templates at the first entry's positions (the
    reference would read another question's answer there): an error
    otherwise.
    """
    source = source or '--vqa_%s_file' % kind
    templates = QUESTIONS[kind]
    positions = template_positions(results, templates, source)
    wanted = set(positions)

    def select(image_id, name):
        entry = results[image_id][name]
        require_templates_at(entry['vqa'], templates, positions, source, image_id, name)
        answers = entry['answers']
        if kind == 'bg':
            return [a for p, a in enumerate(answers) if p in wanted]
        unanswered = [(t, p) for t, p in zip(templates, positions) if p >= len(answers)]
        if unanswered:
            raise ValueError('%s: %s / %s has %d answers, none to %r (position %d of its "vqa" '
                             'list): regenerate the VQA answers with the VQA step'
                             % ((source, image_id, name, len(answers)) + unanswered[0]))
        return [answers[p] for p in positions]
    return select


def require_templates_at(pairs, templates, positions, source, image_id, name):
    """Error unless ``pairs`` asks ``templates[k]`` at ``positions[k]`` for every k."""
    for template, p in zip(templates, positions):
        asked = pairs[p][0] if p < len(pairs) else None
        if asked != template:
            raise ValueError('%s: %s / %s asks %s at position %d of its "vqa" list where the '
                             'first entry of the file asks %r; the answers of every entry are '
                             'read at the first entry\'s positions: write every entry with the '
                             'same questions in the same order (the VQA step does)'
                             % (source, image_id, name, 'nothing' if asked is None else repr(asked),
                                p, template))


def cache_texts(results, kind, aliases, source=None):
    """Every distinct text a cache of ``kind`` ('fg' or 'bg') must hold (``aliases``:
    see :func:`fg_prompted_answers`)."""
    select = answer_selector(results, kind, source)
    texts = {}
    for image_id, per_class in results.items():
        for name in per_class:
            if kind == 'fg':
                chosen = fg_prompted_answers(name, select(image_id, name), aliases)
            else:
                chosen = bg_answers(name, select(image_id, name))
            texts.update(dict.fromkeys(chosen))
    return list(texts)


class TextFeatureCache:
    """text -> normalised feature, with the identity of the CLIP that made it."""

    def __init__(self, texts, features, kind, prompt, clip_name, clip_sha256):
        if len(texts) != len(features):
            raise ValueError('%d texts but %d features' % (len(texts), len(features)))
        self.index = {t: i for i, t in enumerate(texts)}
        self.texts = list(texts)
        self.features = features
        self.kind, self.prompt = kind, prompt
        self.clip_name, self.clip_sha256 = clip_name, clip_sha256

    def rows(self, texts):
        """Row of each text in ``features``; a clear error for unknown texts."""
        missing = [t for t in texts if t not in self.index]
        if missing:
            raise KeyError('text(s) %s are not in the %s text-feature cache; rebuild it with '
                           'tools/gen_text_feats_cache.py' % (missing[:3], self.kind))
        return [self.index[t] for t in texts]

    def lookup(self, texts):
        """Features [len(texts), D] of the given texts."""
        return self.features[self.rows(texts)]

    def check_identity(self, clip_name, clip_sha256, path='the cache'):
        """Refuse a cache made with other CLIP weights."""
        if clip_sha256 != self.clip_sha256:
            raise ValueError(
                '%s was built with CLIP %s (weights sha256 %s...) but this run uses %s (%s...): '
                'rebuild it with tools/gen_text_feats_cache.py --clip %s'
                % (path, self.clip_name, self.clip_sha256[:12], clip_name, clip_sha256[:12],
                   clip_name))

    def save(self, path):
        meta = {'texts': json.dumps(self.texts), 'kind': self.kind, 'prompt': self.prompt,
                'clip_name': self.clip_name, 'clip_sha256': self.clip_sha256}
        data = safetensors_bytes({'features': self.features.contiguous().cpu()}, meta)
        with atomic_write(path) as f:
            f.write(data)

    @classmethod
    def load(cls, path):
        if not os.path.isfile(path):
            raise FileNotFoundError('text-feature cache %s does not exist (build it with '
                                    'tools/gen_text_feats_cache.py)' % path)
        with safe_open(path, framework='pt') as f:
            meta = f.metadata() or {}
            missing = [k for k in ('texts', 'kind', 'prompt', 'clip_name', 'clip_sha256')
                       if k not in meta]
            if missing:
                raise ValueError('%s is not a text-feature cache of this toolkit (metadata %s '
                                 'missing)' % (path, missing))
            features = f.get_tensor('features')
        return cls(json.loads(meta['texts']), features, meta['kind'], meta['prompt'],
                   meta['clip_name'], meta['clip_sha256'])


def build_cache(results, kind, encode_texts, clip_name, clip_sha256, aliases, prompt=PROMPT,
                batch_size=256, source=None):
    """Encode every text of ``results`` with ``encode_texts(list of str) -> [n, D]``.

    Features are L2-normalised float32; ``source`` names the results in errors;
    ``aliases``: see :func:`fg_prompted_answers`.
    """
    texts = cache_texts(results, kind, aliases, source)
    chunks = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            prompts = [prompt.format(t) for t in texts[start:start + batch_size]]
            feats = encode_texts(prompts).float()
            chunks.append(feats / feats.norm(dim=-1, keepdim=True))
    features = torch.cat(chunks) if chunks else torch.zeros(0, 0)
    return TextFeatureCache(texts, features, kind, prompt, clip_name, clip_sha256)
