"""The BLIP VQA step on a tiny random model: schema, batching, resume, errors."""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

import run_sample
from conftest import REPO, has_file_ending, kill_when
from tools.gen_text_feats_cache import main as gen_cache
from tools.make_demo_voc import generate_demo_voc
from tools.make_tiny_blip import write_tiny_blip
from tools.make_tiny_clip import write_tiny_clip
from vqa.blip import BlipVQA
from vqa.lemmatize import lemminflect_lemmatizer
from vqa.results import BG_QUESTIONS, FG_QUESTIONS, load_results
from step.vqa import class_questions
from voc12.devkit import TEXT_CLASS_NAMES


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


def test_answers_every_question_and_feeds_the_text_features(tmp_path, small_voc, tiny_blip):
    run_sample.main(vqa_args(small_voc, tmp_path, tiny_blip, '--vqa_export_npy', 'True'))
    fg = load_results(str(tmp_path / 'voc_vqa_fg_blip.json'), set(TEXT_CLASS_NAMES))
    bg = load_results(str(tmp_path / 'voc_vqa_bg_blip.json'), set(TEXT_CLASS_NAMES))
    for image_id in small_voc['ids']:
        names = {TEXT_CLASS_NAMES[c] for c in small_voc['labels'][image_id]}
        assert set(fg[image_id]) == set(bg[image_id]) == names
        for name in names:
            assert [q for q, _ in fg[image_id][name]['vqa']] == list(FG_QUESTIONS)
            assert [q for q, _ in bg[image_id][name]['vqa']] == list(BG_QUESTIONS)
            assert len(fg[image_id][name]['answers']) == 6
            assert len(bg[image_id][name]['answers']) == 10
    meta = json.loads((tmp_path / 'voc_vqa_fg_blip.meta.json').read_text())
    assert meta['lemmatizer'] in ('nltk-wordnet', 'lemminflect') and meta['num_beams'] == 3
    npy = np.load(tmp_path / 'voc_vqa_fg_blip.npy', allow_pickle=True).item()
    first = npy[small_voc['ids'][0]]
    assert isinstance(next(iter(first.values()))['vqa'][0], tuple)
    clip = write_tiny_clip(str(tmp_path / 'clip.safetensors'))
    gen_cache(['voc', '--vqa_fg_file', str(tmp_path / 'voc_vqa_fg_blip.json'),
               '--vqa_bg_file', str(tmp_path / 'voc_vqa_bg_blip.json'),
               '--vqa_fg_cache_file', str(tmp_path / 'fg.safetensors'),
               '--vqa_bg_cache_file', str(tmp_path / 'bg.safetensors'), '--clip', clip])
    assert (tmp_path / 'fg.safetensors').is_file() and (tmp_path / 'bg.safetensors').is_file()


def test_batched_answers_equal_one_question_at_a_time(small_voc, tiny_blip):
    from voc12.devkit import VOC12
    source = VOC12(small_voc['root'])
    model = BlipVQA(tiny_blip, image_size=48)
    ids = small_voc['ids'][:3]
    images = [source.read_image(i) for i in ids]
    questions = [[q for c in source.image_label_ids(i)
                  for q in class_questions(TEXT_CLASS_NAMES[c], TEXT_CLASS_NAMES)] for i in ids]
    batched = model.answer(images, questions)
    single = [[model.answer([img], [[q]])[0][0] for q in qs] for img, qs in zip(images, questions)]
    assert batched == single
    assert sum(len(a) for a in batched) == sum(16 * len(source.image_label_ids(i)) for i in ids)


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
    assert len(class_questions('cat', TEXT_CLASS_NAMES)) == 16
    with pytest.raises(ValueError, match="class 'unicorn' is not a class of the dataset"):
        class_questions('unicorn', TEXT_CLASS_NAMES)


def test_offline_noun_lemmatiser():
    lemmatize = lemminflect_lemmatizer()
    assert lemmatize('cats') == 'cat'
    assert lemmatize('living rooms') == 'living room'
    assert lemmatize('grass') == 'grass'
