"""The tiny-CLIP trainer (tools/train_tiny_clip.py): its views, and a short run that our
loader reads and that names held-out objects well above chance."""
import numpy as np
import pytest
import torch

from net.clip_models import load_clip
from tools.make_demo_voc import VOC_CLASSES
from tools.train_tiny_clip import IMAGE_SIZE, LOGIT_SCALE, accuracy_summary, class_ids_of, \
    is_largest_object, object_views, train_tiny_clip, view_set, view_target

CLASSES = 'aeroplane,car,person'


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('clip') / 'tiny_clip.safetensors')
    return train_tiny_clip(path, class_ids_of(CLASSES), seed=0, scenes=40, steps=90,
                           batch_size=48, held_out_scenes=15)


def test_short_run_names_held_out_objects_well_above_chance(trained):
    assert trained['chance'] == pytest.approx(1 / 3)
    assert trained['held_out_objects'] >= 15
    assert trained['crop_accuracy'] >= 0.8
    assert trained['masked_accuracy'] >= 0.8


def test_crops_another_object_dominates_are_counted_apart(trained):
    n, ambiguous = trained['held_out_objects'], trained['ambiguous_crops']
    assert 0 <= ambiguous < n
    hits_all = round(trained['crop_accuracy_all'] * n)
    hits_own = round(trained['crop_accuracy'] * (n - ambiguous))
    assert hits_all == pytest.approx(trained['crop_accuracy_all'] * n, abs=1e-3)
    assert hits_own <= hits_all <= hits_own + ambiguous
    line = accuracy_summary(trained)
    assert '%.1f%% of %d held-out object crops' % (100 * trained['crop_accuracy'],
                                                   n - ambiguous) in line
    assert 'counting the %d crops' % ambiguous in line


def test_a_crop_counts_when_its_object_is_the_largest_in_it():
    comps = torch.zeros(4, 4, 4)          # two objects, a region, the plain background
    comps[0, :2] = 1                      # object 0: 8 pixels
    comps[1, 2:, :3] = 1                  # object 1: 6 pixels
    comps[2, 2:, 3:] = 1                  # the region (not an object): 2 pixels
    assert is_largest_object(comps, 0, 2)
    assert not is_largest_object(comps, 1, 2)
    comps[1, 2:, 3:] = 1                  # object 1 now as large as object 0: ambiguous
    assert not is_largest_object(comps, 0, 2) and not is_largest_object(comps, 1, 2)
    assert is_largest_object(comps[:1], 0, 1)   # alone in its crop


def test_saved_weights_load_as_a_mask_adapted_clip(trained):
    model = load_clip(trained['path'])
    assert model.input_resolution == IMAGE_SIZE
    assert model.mask_embedding is not None and model.mask_embedding.shape == (3, 64, 64)
    assert float(model.clip.logit_scale.exp()) == pytest.approx(LOGIT_SCALE)
    image = torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    full = torch.ones(2, 1, IMAGE_SIZE, IMAGE_SIZE)
    assert torch.allclose(model.encode_image(image, full), model.encode_image(image), atol=1e-5)


def test_untrained_clip_is_near_chance(tmp_path):
    random = train_tiny_clip(str(tmp_path / 'random.safetensors'), class_ids_of(CLASSES),
                             seed=0, steps=0, held_out_scenes=15)
    assert random['steps'] == 0 and 'loss' not in random
    assert random['crop_accuracy'] < 0.75


def test_view_targets_follow_the_area_each_thing_covers():
    comps = torch.zeros(3, 4, 4)
    comps[0, :, :1] = 1          # an object: 4 pixels
    comps[1, :, 1:2] = 1         # a region: 4 pixels
    comps[2, :, 2:] = 1          # plain background: 8 pixels
    vocab = {'cat': 0, 'striped ring cat': 1, 'water': 2, 'grey ground': 3}
    texts = [['cat', 'striped ring cat'], ['water'], ['grey ground']]
    target = view_target(comps[0] + comps[1], comps, texts, vocab)
    assert target.tolist() == pytest.approx([0.25, 0.25, 0.5, 0.0])
    assert view_target(torch.ones(4, 4), comps, texts, vocab).sum() == pytest.approx(1.0)


def test_views_of_the_world_are_normalised_masked_images():
    vocab = {}
    views = view_set(3, class_ids_of(CLASSES), 4, vocab)
    n = len(views['images'])
    assert views['images'].shape == (n, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert views['prompts'].shape == (n, 1, IMAGE_SIZE, IMAGE_SIZE)
    assert set(views['prompts'].unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(views['targets'].sum(1), torch.ones(n), atol=1e-5)
    assert set(views['classes'].tolist()) <= {VOC_CLASSES.index(c) for c in CLASSES.split(',')}
    assert {'aeroplane', 'car', 'person'} & set(vocab)
    assert {'water', 'sky', 'snow'} & set(vocab)        # their home regions


def test_object_views_spill_onto_the_home_region_only_when_the_frame_holds_it():
    comps = torch.zeros(2, 16, 16)
    comps[0, 4:10, 4:10] = 1                      # the object; comps[1], its region, is empty

    def views(home):
        return object_views(np.random.default_rng(0), comps, 0, home)
    without_region = views(None)
    left_out = views(1)
    assert len(left_out) == len(without_region)
    assert all(torch.equal(a, b) for a, b in zip(left_out, without_region))
    comps[1, 10:, :] = 1
    spill = views(1)
    assert len(spill) == len(without_region) + 1
    assert (spill[-1] * comps[1]).sum() > 0 and (spill[-1] * comps[0]).sum() > 0


def test_unknown_class_names_are_refused():
    with pytest.raises(ValueError, match='unknown class names'):
        class_ids_of('cat,unicorn')
