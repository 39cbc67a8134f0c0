"""The BLIP VQA step on a tiny random model: schema, batching, first question token, resume,
errors."""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch

from conftest import REPO, has_file_ending, kill_when
import run_sample
from step.vqa import class_questions
from tools.gen_text_feats_cache import main as gen_cache
from tools.make_demo_voc import generate_demo_voc
from tools.make_tiny_blip import write_tiny_blip
from tools.make_tiny_clip import write_tiny_clip
from voc12.devkit import VOC12
from vqa.blip import BlipVQA, first_question_token
from vqa.lemmatize import lemminflect_lemmatizer
from vqa.results import BG_QUESTIONS, FG_QUESTIONS, load_results


@pytest.fixture(scope='module')
def tiny_blip(tmp_path_factory):
    return write_tiny_blip(str(tmp_path_factory.mktemp('blip')))


@pytest.fixture(scope='module')
def small_voc(tmp_path_factory):
    return generate_demo_voc(str(tmp_path_factory.mktemp('vqa_voc') / 'VOC2012'), n_images=6,
                             seed=5, min_side=64, max_side=96, max_classes=5)


def vqa_args(voc, work_space, blip, *extra):
    return ['--voc12_root', voc['root'], '--work_space', str(work_space), '--device', 'cpu',
            '--num_workers', '0', '--vqa_model', blip, '--vqa_list', 'trainval',
            '--vqa_batch_size', '2', '--vqa_image_size', '48', '--vqa_pass', 'True'] + list(extra)


@pytest.fixture(scope='module')
def default_run(tmp_path_factory, small_voc, tiny_blip):
    """Work space of the step run with the default flags (+ the .npy export)."""
    work_space = tmp_path_factory.mktemp('vqa_default')
    run_sample.main(vqa_args(small_voc, work_space, tiny_blip, '--vqa_export_npy', 'True'))
    return work_space


def test_answers_every_question_and_feeds_the_text_features(tmp_path, small_voc, default_run):
    ws = default_run
    fg = load_results(str(ws / 'voc_vqa_fg_blip.json'), set(VOC12.class_names))
    bg = load_results(str(ws / 'voc_vqa_bg_blip.json'), set(VOC12.class_names))
    for image_id in small_voc['ids']:
        names = {VOC12.class_names[c] for c in small_voc['labels'][image_id]}
        assert set(fg[image_id]) == set(bg[image_id]) == names
        for name in names:
            assert [q for q, _ in fg[image_id][name]['vqa']] == list(FG_QUESTIONS)
            assert [q for q, _ in bg[image_id][name]['vqa']] == list(BG_QUESTIONS)
            assert len(fg[image_id][name]['answers']) == 6
            assert len(bg[image_id][name]['answers']) == 10
    meta = json.loads((ws / 'voc_vqa_fg_blip.meta.json').read_text())
    assert meta['lemmatizer'] in ('nltk-wordnet', 'lemminflect') and meta['num_beams'] == 3
    assert meta['question_bos'] == 'enc'
    npy = np.load(ws / 'voc_vqa_fg_blip.npy', allow_pickle=True).item()
    first = npy[small_voc['ids'][0]]
    assert isinstance(next(iter(first.values()))['vqa'][0], tuple)
    clip = write_tiny_clip(str(tmp_path / 'clip.safetensors'))
    gen_cache(['voc', '--vqa_fg_file', str(ws / 'voc_vqa_fg_blip.json'),
               '--vqa_bg_file', str(ws / 'voc_vqa_bg_blip.json'),
               '--vqa_fg_cache_file', str(tmp_path / 'fg.safetensors'),
               '--vqa_bg_cache_file', str(tmp_path / 'bg.safetensors'), '--clip', clip])
    assert (tmp_path / 'fg.safetensors').is_file() and (tmp_path / 'bg.safetensors').is_file()


def images_and_questions(voc, n_images):
    """The first images of ``voc`` and the 16 questions of each of their classes."""
    source = VOC12(voc['root'])
    ids = voc['ids'][:n_images]
    return ([source.read_image(i) for i in ids],
            [[q for c in source.image_label_ids(i)
              for q in class_questions(VOC12.class_names[c], VOC12.class_names)] for i in ids])


def test_batched_answers_equal_one_question_at_a_time(small_voc, tiny_blip):
    """float64, because the random tiny BLIP's beams nearly tie: in float32 the roundings of
    another batch shape (which differ between CPU kernels, e.g. AVX2 and AVX-512) flip them."""
    model = BlipVQA(tiny_blip, image_size=48, dtype=torch.float64)
    images, questions = images_and_questions(small_voc, 3)
    batched = model.answer(images, questions)
    single = [[model.answer([img], [[q]])[0][0] for q in qs] for img, qs in zip(images, questions)]
    assert batched == single
    assert [len(a) for a in batched] == [len(q) for q in questions]


def answers_and_first_encoder_tokens(model, images, questions):
    """(answers, the token id at position 0 of every question the question encoder receives)."""
    first = []
    hook = model.model.text_encoder.register_forward_pre_hook(
        lambda module, args, kwargs: first.extend(kwargs['input_ids'][:, 0].tolist()),
        with_kwargs=True)
    try:
        answers = model.answer(images, questions)
    finally:
        hook.remove()
    return answers, first


def huggingface_answers(model, images, questions, first_token):
    """BlipForQuestionAnswering.generate, one question at a time, with the tokenizer's first
    token replaced by ``first_token``."""
    answers = []
    for image, qs in zip(images, questions):
        pixels = model.preprocess(image)[None].to(model.dtype)
        answers.append([])
        for q in qs:
            ids = model.tokenizer([q], return_tensors='pt').input_ids
            ids[:, 0] = first_token
            out = model.model.generate(input_ids=ids, pixel_values=pixels,
                                       interpolate_pos_encoding=True, **model.generation)
            answers[-1].append(model.tokenizer.decode(out[0], skip_special_tokens=True).strip())
    return answers


def test_questions_start_with_enc_by_default_and_cls_with_the_flag(small_voc, tiny_blip):
    """[ENC] at position 0 as the reference BLIP; [CLS] = HuggingFace's own generate (in
    float64 for the reason given in the batching test above)."""
    images, questions = images_and_questions(small_voc, 1)
    answers = {}
    for choice, token in (('enc', '[ENC]'), ('cls', '[CLS]')):
        model = BlipVQA(tiny_blip, image_size=48, dtype=torch.float64,
                        **({'question_bos': 'cls'} if choice == 'cls' else {}))
        token_id = model.tokenizer.convert_tokens_to_ids(token)
        answers[choice], first = answers_and_first_encoder_tokens(model, images, questions)
        assert model.question_bos == choice and model.settings()['question_bos'] == choice
        assert first == [token_id] * sum(len(q) for q in questions)
        assert answers[choice] == huggingface_answers(model, images, questions, token_id)
    assert answers['enc'] != answers['cls']
    assert model.tokenizer.convert_tokens_to_ids('[ENC]') != model.tokenizer.cls_token_id


def test_tokenizer_without_enc_falls_back_to_cls():
    from transformers import BertTokenizer
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(
        ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'cat'])})
    assert first_question_token(tokenizer, 'enc') == ('cls', 2)
    assert first_question_token(tokenizer, 'cls') == ('cls', 2)
    with pytest.raises(ValueError, match="question BOS 'bos': use one of enc, cls"):
        first_question_token(tokenizer, 'bos')


def test_cls_flag_is_recorded_and_parts_of_other_settings_are_refused(tmp_path, small_voc,
                                                                      tiny_blip, default_run):
    run_sample.main(vqa_args(small_voc, tmp_path, tiny_blip, '--vqa_question_bos', 'cls'))
    for kind in ('fg', 'bg'):
        meta = json.loads((tmp_path / ('voc_vqa_%s_blip.meta.json' % kind)).read_text())
        assert meta['question_bos'] == 'cls'
    enc, cls = (question_answer_pairs(ws) for ws in (default_run, tmp_path))
    assert [q for q, _ in enc] == [q for q, _ in cls] and enc != cls
    with pytest.raises(ValueError, match=r'vqa_parts/.*\.json was written with other VQA '
                                         r'settings \(question_bos=cls\) than this run '
                                         r'\(question_bos=enc\)'):
        run_sample.main(vqa_args(small_voc, tmp_path, tiny_blip))


def question_answer_pairs(work_space):
    """Every (question, raw answer) of the FG and BG results of a work space, in file order."""
    files = [str(work_space / ('voc_vqa_%s_blip.json' % kind)) for kind in ('fg', 'bg')]
    return [tuple(qa) for path in files for per_class in load_results(path).values()
            for entry in per_class.values() for qa in entry['vqa']]


def test_interrupted_run_resumes_to_the_same_files(tmp_path, small_voc, tiny_blip):
    full, killed = tmp_path / 'full', tmp_path / 'killed'
    run_sample.main(vqa_args(small_voc, full, tiny_blip, '--vqa_batch_size', '1'))
    cmd = ['python', str(REPO / 'tools' / 'run_vqa.py')] + vqa_args(
        small_voc, killed, tiny_blip, '--vqa_batch_size', '1')[:-2]
    import sys
    cmd[0] = sys.executable
    parts = killed / 'vqa_parts'
    kill_when(cmd, lambda: has_file_ending(parts, '.json'), timeout=120)
    done = [n for n in os.listdir(parts) if n.endswith('.json')]
    assert 1 <= len(done) < len(small_voc['ids'])
    result = subprocess.run(cmd, check=True, capture_output=True, text=True)
    assert '%d done' % len(done) in result.stdout
    for name in ('voc_vqa_fg_blip.json', 'voc_vqa_bg_blip.json'):
        assert (killed / name).read_bytes() == (full / name).read_bytes()


def test_missing_model_folder(tmp_path, small_voc):
    with pytest.raises(FileNotFoundError, match='VQA model folder .*nowhere does not exist'):
        run_sample.main(vqa_args(small_voc, tmp_path, str(tmp_path / 'nowhere')))


def test_unreadable_image_is_named(tmp_path, small_voc, tiny_blip):
    root = tmp_path / 'voc'
    shutil.copytree(small_voc['root'], root)
    bad = small_voc['ids'][0]
    (root / 'JPEGImages' / (bad + '.jpg')).write_bytes(b'not a jpeg')
    voc = dict(small_voc, root=str(root))
    with pytest.raises(ValueError, match='%s.jpg cannot be decoded' % bad):
        run_sample.main(vqa_args(voc, tmp_path / 'ws', tiny_blip))


def test_class_not_in_the_dataset_is_refused():
    assert len(class_questions('cat', VOC12.class_names)) == 16
    with pytest.raises(ValueError, match="class 'unicorn' is not a class of the dataset"):
        class_questions('unicorn', VOC12.class_names)


def test_offline_noun_lemmatiser():
    lemmatize = lemminflect_lemmatizer()
    assert lemmatize('cats') == 'cat'
    assert lemmatize('living rooms') == 'living room'
    assert lemmatize('grass') == 'grass'
