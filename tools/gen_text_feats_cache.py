"""Text-feature caches of the VQA answers (docs/method.md#text-features).

    python tools/gen_text_feats_cache.py voc12 \\
        --vqa_fg_file vqa/voc_vqa_fg_blip.json --vqa_fg_cache_file vqa/voc_vqa_fg_blip_ViT-L-14_cache.safetensors \\
        --vqa_bg_file vqa/voc_vqa_bg_blip.json --vqa_bg_cache_file vqa/voc_vqa_bg_blip_ViT-L-14_cache.safetensors \\
        --clip ViT-L/14

Arguments as the reference script; the dataset is a ``--dataset`` name of
:mod:`data.registry` (``voc12``, ``coco14``) or the reference's name of it
(``voc``, ``coco``), whose entry gives the class names and their text
aliases; ``folder --data_root DIR`` for a folder dataset, whose classes.txt
gives them. The answers
encoded are those the reference selects: the lemmas of the 6 FG / 10 BG question templates, found
by their position in the ``vqa`` list of the file's first entry; other
questions are ignored (``vqa.text_features.answer_selector``). VQA results
are our JSON; the authors' pickled ``voc_vqa_*_blip.npy`` are converted to
JSON first, only with ``--import_reference_npy``. Caches are safetensors +
metadata (the CLIP model's name and weights checksum, the prompt); a cache
path ending in ``.npy`` is written as ``.safetensors``.
``--import_reference_cache`` converts the authors' ``*_cache.npy`` (pickles)
instead of encoding the answers again; ``--clip`` then only names the model
whose checksum tags the result.
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data.registry import DATASETS  # noqa: E402
from net.clip_models import (load_clip, read_clip_state_dict, resolve_clip_file,  # noqa: E402
                              tokenize, weights_checksum)
from vqa.results import import_reference_npy, load_results  # noqa: E402
from vqa.text_features import PROMPT, TextFeatureCache, build_cache, cache_texts  # noqa: E402

# Registry names and the reference's short names ('voc', 'coco') of every dataset.
DATASET_NAMES = {**{entry.short_name: entry for entry in DATASETS.values()}, **DATASETS}
PICKLE_WARNING = ('Importing a pickle runs code stored in the file: only import files from a '
                  'trusted source')


def class_names_and_aliases(dataset, data_root):
    """(class names, {name: names counted as it in FG answers}) of the dataset: its
    registry entry's, or, when the data names its classes (a folder dataset), the
    ones read from the folder at ``data_root``."""
    entry = DATASET_NAMES[dataset]
    if entry.class_names is not None:
        return entry.class_names, entry.text_aliases
    if not data_root:
        raise ValueError('dataset %s needs --%s DIR (the folder that names its classes)'
                         % (dataset, entry.root_flag))
    source = entry.build(data_root)
    return source.class_names, source.class_aliases


def our_cache_path(path):
    """``x.npy`` -> ``x.safetensors``; other names unchanged."""
    return os.path.splitext(path)[0] + '.safetensors' if path.endswith('.npy') else path


def read_results(path, class_names, import_npy):
    """Our JSON results; an authors' .npy is converted (beside it) only on request."""
    if path.endswith('.npy'):
        if not import_npy:
            raise ValueError('%s is a pickled .npy of the reference: pass '
                             '--import_reference_npy to convert it to JSON once' % path)
        json_path = os.path.splitext(path)[0] + '.json'
        import_reference_npy(path, json_path)
        print('converted %s -> %s' % (path, json_path))
        path = json_path
    return load_results(path, set(class_names))


def reference_cache_features(npy_path):
    """{text: feature} of an authors' cache (pickled dict; explicit import only).

    FG caches map image -> class -> {answer: [1, D]}; BG caches hold
    ``{"profile": ..., "feats": image -> class -> {"answers": [...],
    "answer_feats": [L, D]}}``.
    """
    raw = np.load(npy_path, allow_pickle=True).item()
    table = {}
    for per_class in (raw['feats'] if 'feats' in raw else raw).values():
        for entry in per_class.values():
            if 'answer_feats' in entry:
                if entry['answer_feats'] is None:         # no BG answer left
                    continue
                rows = torch.as_tensor(entry['answer_feats']).float()
                table.update(zip(entry['answers'], rows))
            else:
                table.update((t, torch.as_tensor(v).float().reshape(-1)) for t, v in entry.items())
    return table


def import_reference_cache(npy_path, results, kind, clip_name, checksum, aliases, source=None):
    """Our cache from the authors' one, for the texts our results need."""
    table = reference_cache_features(npy_path)
    texts = cache_texts(results, kind, aliases, source)
    missing = [t for t in texts if t not in table]
    if missing:
        raise KeyError('%s lacks %d texts of the VQA results, first %s'
                       % (npy_path, len(missing), missing[:3]))
    features = torch.stack([table[t] for t in texts])
    features = features / features.norm(dim=-1, keepdim=True)
    return TextFeatureCache(texts, features, kind, PROMPT, clip_name, checksum)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('dataset', choices=list(DATASET_NAMES))
    p.add_argument('--data_root', default=None,
                   help='folder dataset: the folder whose classes.txt names the classes')
    p.add_argument('--vqa_fg_file', required=True)
    p.add_argument('--vqa_fg_cache_file', required=True)
    p.add_argument('--vqa_bg_file', required=True)
    p.add_argument('--vqa_bg_cache_file', required=True)
    p.add_argument('--clip', default='ViT-L/14', help='CLIP name (in the CLIP cache folder) or file')
    p.add_argument('--clip_weights', default=None, help='explicit CLIP weights file')
    p.add_argument('--device', default='cpu')
    p.add_argument('--import_reference_npy', action='store_true',
                   help='allow reading the authors\' pickled VQA .npy files. ' + PICKLE_WARNING)
    p.add_argument('--import_reference_cache', nargs=2, metavar=('FG_NPY', 'BG_NPY'),
                   help='convert the authors\' pickled caches instead of encoding. '
                   + PICKLE_WARNING)
    a = p.parse_args(argv)
    class_names, aliases = class_names_and_aliases(a.dataset, a.data_root)
    clip_file = a.clip_weights or a.clip
    sources = {'fg': a.vqa_fg_file, 'bg': a.vqa_bg_file}
    results = {k: read_results(sources[k], class_names, a.import_reference_npy) for k in sources}
    outputs = {'fg': our_cache_path(a.vqa_fg_cache_file), 'bg': our_cache_path(a.vqa_bg_cache_file)}
    if a.import_reference_cache:
        checksum = weights_checksum(read_clip_state_dict(resolve_clip_file(clip_file)))
        npy_caches = dict(zip(('fg', 'bg'), a.import_reference_cache))
        caches = {k: import_reference_cache(npy_caches[k], results[k], k, a.clip, checksum,
                                            aliases, sources[k]) for k in ('fg', 'bg')}
    else:
        model = load_clip(clip_file, device=a.device)
        with torch.no_grad():
            caches = {k: build_cache(results[k], k, lambda prompts: model.encode_text(
                tokenize(prompts)), a.clip, model.checksum, aliases, source=sources[k])
                for k in ('fg', 'bg')}
    for kind, cache in caches.items():
        cache.save(outputs[kind])
        print('%s cache: %d texts -> %s' % (kind, len(cache.texts), outputs[kind]))


if __name__ == '__main__':
    main()
