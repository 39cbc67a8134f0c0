"""VQA text features (docs/method.md#text-features) against text_feats.npz; caches, imports,
refusals."""
import json
import re
import shutil

import numpy as np
import pytest
import torch

from conftest import REF
from data.registry import DATASETS
from net.clip_models import load_clip
from tools.gen_text_feats_cache import main as gen_cache
from vqa.results import BG_QUESTIONS, FG_QUESTIONS, QUESTIONS, load_results
from vqa.text_bank import build_text_bank, require_vqa_entries
from vqa.text_features import (TextFeatureCache, answer_selector, bg_answers,
                                fg_prompted_answers)

VQA = REF / 'vqa'
TINY = REF / 'layouts' / 'maskclip_tiny_state_dict.pt'
VOC = DATASETS['voc12']
TEXT_CLASS_NAMES, ALIASES = VOC.class_names, VOC.text_aliases


EXTRA_QUESTIONS = ('what colour is the {}?', 'is there a {} in the photo?')


def rearranged_entry(entry):
    """The same questions and answers in reverse order, between pairs that ask no template,
    with a second asking of a template, and raw ``vqa`` answers that differ from ``answers``."""
    qa = list(zip([q for q, _ in entry['vqa']], entry['answers']))[::-1]
    qa = ([(EXTRA_QUESTIONS[0], 'extra answer')] + qa[:2] + [(EXTRA_QUESTIONS[1], 'other extra')]
          + qa[2:] + [(qa[0][0], 'second asking')])
    return {'vqa': [[q, 'raw %s' % a] for q, a in qa], 'answers': [a for _, a in qa]}


def rearranged(results):
    return {i: {name: rearranged_entry(e) for name, e in per_class.items()}
            for i, per_class in results.items()}


def read_variant(variant, kind, folder):
    """(path, results) of the fixture's ``kind`` results, as given or rearranged."""
    path = VQA / ('voc_vqa_%s_mini.json' % kind)
    results = json.loads(path.read_text())
    if variant == 'rearranged':
        results = rearranged(results)
        path = folder / ('%s.json' % kind)
        path.write_text(json.dumps(results))
    return path, results


def build_caches(fg_path, bg_path, out):
    """(FG cache, BG cache) made by the tool (an FG path ending in .npy is written as
    .safetensors)."""
    gen_cache(['voc', '--vqa_fg_file', str(fg_path), '--vqa_bg_file', str(bg_path),
               '--vqa_fg_cache_file', str(out / 'fg_cache.npy'),
               '--vqa_bg_cache_file', str(out / 'bg_cache.safetensors'), '--clip', str(TINY)])
    return (TextFeatureCache.load(str(out / 'fg_cache.safetensors')),
            TextFeatureCache.load(str(out / 'bg_cache.safetensors')))


@pytest.fixture(scope='module')
def caches(tmp_path_factory):
    return build_caches(VQA / 'voc_vqa_fg_mini.json', VQA / 'voc_vqa_bg_mini.json',
                        tmp_path_factory.mktemp('caches'))


@pytest.fixture(scope='module', params=['as_given', 'rearranged'])
def variant(request, tmp_path_factory):
    """VQA results (the fixture's, or rearranged) and the caches made from them."""
    out = tmp_path_factory.mktemp(request.param)
    (fg_path, fg), (bg_path, bg) = (read_variant(request.param, k, out) for k in ('fg', 'bg'))
    fg_cache, bg_cache = build_caches(fg_path, bg_path, out)
    return dict(name=request.param, fg=fg, bg=bg, fg_cache=fg_cache, bg_cache=bg_cache)


def reference_pairs():
    ref = np.load(VQA / 'text_feats.npz')
    return ref, [(str(i), str(c)) for i, c in zip(ref['pair_img'], ref['pair_label'])]


def test_fg_and_bg_features_match_reference(variant):
    """Also when every entry asks other questions too, in another order, and its raw answers
    differ from its lemmas: the reference reads the lemmas of the templates only."""
    fg_results, bg_results = variant['fg'], variant['bg']
    fg_cache, bg_cache = variant['fg_cache'], variant['bg_cache']
    ref, pairs = reference_pairs()
    model = load_clip(str(TINY))
    class_ids = [TEXT_CLASS_NAMES.index(c) for _, c in pairs]
    with torch.no_grad():
        label_feats = model.encode_prompts(list(TEXT_CLASS_NAMES))
    bank = build_text_bank([(i, c) for (i, _), c in zip(pairs, class_ids)], TEXT_CLASS_NAMES,
                           label_feats, fg_results, bg_results, fg_cache, bg_cache, ALIASES)
    select_fg, select_bg = answer_selector(fg_results, 'fg'), answer_selector(bg_results, 'bg')
    for k, (image_id, name) in enumerate(pairs):
        prompted = fg_prompted_answers(name, select_fg(image_id, name), ALIASES)
        assert prompted == [str(a) for a in ref['pair%d_fg_answers_prompted' % k]]
        np.testing.assert_allclose(fg_cache.lookup(prompted).numpy(),
                                   ref['pair%d_fg_qa_feats' % k], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(label_feats[class_ids[k]].numpy(),
                                   ref['pair%d_label_feat' % k][0], rtol=1e-4, atol=1e-5)
        t_fg, t_bg, valid, has_bg = bank.features(bank.rows([image_id], [class_ids[k]]))
        np.testing.assert_allclose(t_fg.numpy(), ref['pair%d_fg_feat' % k], rtol=1e-4, atol=1e-5)
        answers = [str(a) for a in ref['pair%d_bg_answers' % k]]
        ours = bg_answers(name, select_bg(image_id, name))
        assert sorted(ours) == sorted(answers)         # reference order is set() order
        assert bool(has_bg[0]) == (not bool(ref['pair%d_bg_is_none' % k]))
        rows = t_bg[0][valid[0]].numpy()
        assert len(rows) == len(answers)
        for answer, row in zip(ours, rows):
            np.testing.assert_allclose(row, ref['pair%d_bg_feats' % k][answers.index(answer)],
                                       rtol=1e-4, atol=1e-5)


def test_rearranged_results_select_the_same_answers(variant, caches):
    """Template order for FG, the entry's order for BG; the caches hold the same texts."""
    fg_cache, bg_cache = caches
    assert set(variant['fg_cache'].texts) == set(fg_cache.texts)
    assert set(variant['bg_cache'].texts) == set(bg_cache.texts)
    as_given = {k: json.loads((VQA / ('voc_vqa_%s_mini.json' % k)).read_text())
                for k in ('fg', 'bg')}
    bg_order = -1 if variant['name'] == 'rearranged' else 1
    for kind, order in (('fg', 1), ('bg', bg_order)):
        select = answer_selector(variant[kind], kind)
        for image_id, per_class in as_given[kind].items():
            for name, entry in per_class.items():
                assert select(image_id, name) == entry['answers'][::order]


def first_entry_of(kind):
    """(results, image id, class name) of the fixture's results and their first entry."""
    results = json.loads((VQA / ('voc_vqa_%s_mini.json' % kind)).read_text())
    image_id = next(i for i in results if results[i])
    return results, image_id, next(iter(results[image_id]))


@pytest.mark.parametrize('kind', ['fg', 'bg'])
def test_template_missing_from_the_first_entry_is_an_error(kind):
    results, image_id, name = first_entry_of(kind)
    entry = results[image_id][name]
    entry['vqa'][1][0] = EXTRA_QUESTIONS[0]
    template = re.escape(repr(QUESTIONS[kind][1]))
    with pytest.raises(ValueError, match=r'vqa_%s.json: the first entry \(%s / %s\) does not ask '
                       r'1 of the %d questions, first %s'
                       % (kind, image_id, name, len(QUESTIONS[kind]), template)):
        answer_selector(results, kind, 'vqa_%s.json' % kind)


def test_template_without_answer_fg_error_bg_ignored():
    """FG: an error (the reference's IndexError); BG: the template adds nothing."""
    for kind in ('fg', 'bg'):
        results, image_id, name = first_entry_of(kind)
        other_id = next(i for i in results if i != image_id and results[i])
        other = next(iter(results[other_id]))
        answers = results[other_id][other]['answers']
        del answers[-1]
        select = answer_selector(results, kind)
        assert select(image_id, name) == results[image_id][name]['answers']
        if kind == 'bg':
            assert select(other_id, other) == answers
        else:
            template = re.escape(repr(FG_QUESTIONS[-1]))
            with pytest.raises(ValueError, match=r'--vqa_fg_file: %s / %s has %d answers, none to '
                               r'%s \(position %d'
                               % (other_id, other, len(answers), template, len(answers))):
                select(other_id, other)


def test_entry_asking_the_questions_elsewhere_is_an_error():
    results, image_id, name = first_entry_of('bg')
    other_id = next(i for i in results if i != image_id and results[i])
    other = next(iter(results[other_id]))
    results[other_id][other] = rearranged_entry(results[other_id][other])
    select = answer_selector(results, 'bg', 'bg.json')
    with pytest.raises(ValueError, match=r'bg.json: %s / %s asks %s at position 0 of its "vqa" '
                       r'list where the first entry of the file asks %s'
                       % (other_id, other, re.escape(repr(EXTRA_QUESTIONS[0])),
                          re.escape(repr(BG_QUESTIONS[0])))):
        select(other_id, other)


def test_substring_rule_and_aliases():
    assert fg_prompted_answers('cat', ['category', 'tabby'], ALIASES) == ['category', 'tabby cat']
    assert fg_prompted_answers('tv monitor', ['tv', 'monitor'], ALIASES) == ['tv tv monitor',
                                                                             'monitor']
    assert fg_prompted_answers('dining table', ['tablecloth'], ALIASES) == ['tablecloth']
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
    image_id = sorted(results)[0]
    present = TEXT_CLASS_NAMES.index(sorted(results[image_id])[0])
    absent = next(c for c, name in enumerate(TEXT_CLASS_NAMES) if name not in results[image_id])
    unknown = next('1999_%06d' % k for k in range(10 ** 6) if '1999_%06d' % k not in results)
    pairs = [(image_id, present), (image_id, absent), (unknown, 0)]
    expected = re.escape('%s/%s, %s/%s' % (image_id, TEXT_CLASS_NAMES[absent], unknown,
                                           TEXT_CLASS_NAMES[0]))
    with pytest.raises(KeyError, match=r'no entry for 2 of the 3 .* ' + expected):
        require_vqa_entries(results, results, pairs, TEXT_CLASS_NAMES, 'fg.json', 'bg.json')


def test_unknown_class_name_in_results_is_an_error(tmp_path):
    path = tmp_path / 'bad.json'
    path.write_text(json.dumps({'2007_000001': {'unicorn': {'vqa': [], 'answers': ['x']}}}))
    with pytest.raises(ValueError, match="bad.json: 2007_000001 has class 'unicorn'"):
        load_results(str(path), set(TEXT_CLASS_NAMES))


def test_entry_without_question_answer_pairs_is_an_error(tmp_path):
    path = tmp_path / 'bad.json'
    path.write_text(json.dumps({'2007_000001': {'cat': {'vqa': [['q']], 'answers': ['x']}}}))
    with pytest.raises(ValueError, match='bad.json: 2007_000001 / cat lacks a "vqa" list of '
                                         r'\[question, answer\] strings'):
        load_results(str(path), set(TEXT_CLASS_NAMES))
