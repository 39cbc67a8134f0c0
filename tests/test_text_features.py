"""VQA text features (METHOD.md stage 2) against text_feats.npz; caches, imports, refusals."""
import json
import shutil

import numpy as np
import pytest
import torch

from conftest import REF
from net.clip_models import load_clip
from tools.gen_text_feats_cache import main as gen_cache
from vqa.results import load_results
from vqa.text_bank import build_text_bank, require_vqa_entries
from vqa.text_features import TextFeatureCache, bg_answers, fg_prompted_answers
from voc12.devkit import TEXT_CLASS_NAMES

VQA = REF / 'vqa'
TINY = REF / 'layouts' / 'maskclip_tiny_state_dict.pt'


@pytest.fixture(scope='module')
def caches(tmp_path_factory):
    out = tmp_path_factory.mktemp('caches')
    gen_cache(['voc', '--vqa_fg_file', str(VQA / 'voc_vqa_fg_mini.json'),
               '--vqa_bg_file', str(VQA / 'voc_vqa_bg_mini.json'),
               '--vqa_fg_cache_file', str(out / 'fg_cache.npy'),
               '--vqa_bg_cache_file', str(out / 'bg_cache.safetensors'), '--clip', str(TINY)])
    return (TextFeatureCache.load(str(out / 'fg_cache.safetensors')),
            TextFeatureCache.load(str(out / 'bg_cache.safetensors')))


def reference_pairs():
    ref = np.load(VQA / 'text_feats.npz')
    return ref, [(str(i), str(c)) for i, c in zip(ref['pair_img'], ref['pair_label'])]


def test_fg_and_bg_features_match_reference(caches):
    fg_cache, bg_cache = caches
    ref, pairs = reference_pairs()
    fg_results = json.loads((VQA / 'voc_vqa_fg_mini.json').read_text())
    bg_results = json.loads((VQA / 'voc_vqa_bg_mini.json').read_text())
    model = load_clip(str(TINY))
    class_ids = [TEXT_CLASS_NAMES.index(c) for _, c in pairs]
    with torch.no_grad():
        label_feats = model.encode_prompts(list(TEXT_CLASS_NAMES))
    bank = build_text_bank([(i, c) for (i, _), c in zip(pairs, class_ids)], TEXT_CLASS_NAMES,
                           label_feats, fg_results, bg_results, fg_cache, bg_cache)
    for k, (image_id, name) in enumerate(pairs):
        prompted = fg_prompted_answers(name, fg_results[image_id][name]['answers'])
        assert prompted == [str(a) for a in ref['pair%d_fg_answers_prompted' % k]]
        np.testing.assert_allclose(fg_cache.lookup(prompted).numpy(),
                                   ref['pair%d_fg_qa_feats' % k], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(label_feats[class_ids[k]].numpy(),
                                   ref['pair%d_label_feat' % k][0], rtol=1e-4, atol=1e-5)
        t_fg, t_bg, valid, has_bg = bank.features(bank.rows([image_id], [class_ids[k]]))
        np.testing.assert_allclose(t_fg.numpy(), ref['pair%d_fg_feat' % k], rtol=1e-4, atol=1e-5)
        answers = [str(a) for a in ref['pair%d_bg_answers' % k]]
        ours = bg_answers(name, bg_results[image_id][name]['answers'])
        assert sorted(ours) == sorted(answers)         # reference order is set() order
        assert bool(has_bg[0]) == (not bool(ref['pair%d_bg_is_none' % k]))
        rows = t_bg[0][valid[0]].numpy()
        for answer, row in zip(ours, rows):
            np.testing.assert_allclose(row, ref['pair%d_bg_feats' % k][answers.index(answer)],
                                       rtol=1e-4, atol=1e-5)


def test_substring_rule_and_aliases():
    assert fg_prompted_answers('cat', ['category', 'tabby']) == ['category', 'tabby cat']
    assert fg_prompted_answers('tv monitor', ['tv', 'monitor']) == ['tv tv monitor', 'monitor']
    assert fg_prompted_answers('dining table', ['tablecloth']) == ['tablecloth']
    assert bg_answers('cat', ['grass', 'cat', 'grass', 'sofa']) == ['grass', 'sofa']


def test_authors_caches_import_to_the_same_features(tmp_path, caches):
    out = tmp_path / 'imported'
    gen_cache(['voc', '--vqa_fg_file', str(VQA / 'voc_vqa_fg_mini.json'),
               '--vqa_bg_file', str(VQA / 'voc_vqa_bg_mini.json'),
               '--vqa_fg_cache_file', str(out) + '_fg.safetensors',
               '--vqa_bg_cache_file', str(out) + '_bg.safetensors', '--clip', str(TINY),
               '--import_reference_cache', str(VQA / 'voc_vqa_fg_mini_tinyclip_cache.npy'),
               str(VQA / 'voc_vqa_bg_mini_tinyclip_cache.npy')])
    for kind, ours in zip(('fg', 'bg'), caches):
        imported = TextFeatureCache.load(str(out) + '_%s.safetensors' % kind)
        assert imported.clip_sha256 == ours.clip_sha256
        np.testing.assert_allclose(imported.lookup(ours.texts).numpy(), ours.features.numpy(),
                                   rtol=1e-4, atol=1e-5)


def test_authors_npy_results_need_the_explicit_flag(tmp_path):
    shutil.copy(VQA / 'voc_vqa_fg_mini.npy', tmp_path / 'fg.npy')
    shutil.copy(VQA / 'voc_vqa_bg_mini.npy', tmp_path / 'bg.npy')
    argv = ['voc', '--vqa_fg_file', str(tmp_path / 'fg.npy'), '--vqa_bg_file',
            str(tmp_path / 'bg.npy'), '--vqa_fg_cache_file', str(tmp_path / 'f.safetensors'),
            '--vqa_bg_cache_file', str(tmp_path / 'b.safetensors'), '--clip', str(TINY)]
    with pytest.raises(ValueError, match='--import_reference_npy'):
        gen_cache(argv)
    gen_cache(argv + ['--import_reference_npy'])
    converted = json.loads((tmp_path / 'fg.json').read_text())
    assert converted == json.loads((VQA / 'voc_vqa_fg_mini.json').read_text())


def test_cache_made_with_another_clip_is_refused(caches):
    fg_cache, _ = caches
    fg_cache.check_identity('tiny', fg_cache.clip_sha256)
    with pytest.raises(ValueError, match='was built with CLIP .* but this run uses ViT-L/14'):
        fg_cache.check_identity('ViT-L/14', '0' * 64, 'vqa/fg.safetensors')


def test_missing_vqa_entries_reported_up_front():
    results = load_results(str(VQA / 'voc_vqa_fg_mini.json'), set(TEXT_CLASS_NAMES))
    pairs = [('2007_001442', 1), ('2007_001442', 7), ('1999_000001', 0)]
    with pytest.raises(KeyError, match=r'no entry for 2 of the 3 .* 2007_001442/cat, '
                                       r'1999_000001/aeroplane'):
        require_vqa_entries(results, results, pairs, TEXT_CLASS_NAMES, 'fg.json', 'bg.json')


def test_unknown_class_name_in_results_is_an_error(tmp_path):
    path = tmp_path / 'bad.json'
    path.write_text(json.dumps({'2007_000001': {'unicorn': {'vqa': [], 'answers': ['x']}}}))
    with pytest.raises(ValueError, match="bad.json: 2007_000001 has class 'unicorn'"):
        load_results(str(path), set(TEXT_CLASS_NAMES))
