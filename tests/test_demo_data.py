"""Tests for the synthetic VOC demo dataset generator (tools/make_demo_voc.py)."""
import json
import os
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from tools.make_demo_voc import REGION_COLOURS, REGION_KINDS, VOC_CLASSES, draw_scene, \
    generate_demo_voc, home_region, layout_image, main, object_mask, part_colour, render_scene, \
    sample_image_size
from tools.make_demo_vqa import VOC_CLASS_NAMES, colour_name, image_answers
from voc12.devkit import VOC12

LIST_DIR = os.path.join("ImageSets", "Segmentation")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A default 40-image dataset, generated once for the module."""
    return generate_demo_voc(str(tmp_path_factory.mktemp("voc")), n_images=40, seed=0)


@pytest.fixture(scope="module")
def demo_aug(tmp_path_factory):
    """A small dataset with SegmentationClassAug and SBD-only images."""
    return generate_demo_voc(str(tmp_path_factory.mktemp("voc_aug")), n_images=12, seed=3, with_aug=True)


def read_list(root, name):
    """Ids of an ImageSets/Segmentation list."""
    with open(os.path.join(root, LIST_DIR, name + ".txt")) as handle:
        return handle.read().split()


def load_mask(root, image_id, folder="SegmentationClass"):
    """Mask of an image as a uint8 array."""
    return np.array(Image.open(os.path.join(root, folder, image_id + ".png")))


def xml_object_names(root, image_id):
    """Class names of the top-level <object> elements (part names ignored)."""
    tree = ET.parse(os.path.join(root, "Annotations", image_id + ".xml"))
    return [obj.find("name").text for obj in tree.getroot().findall("object")]


def mask_class_names(mask):
    """Class names present in a mask (0 background and 255 void excluded)."""
    return {VOC_CLASSES[v - 1] for v in np.unique(mask) if v not in (0, 255)}


def file_bytes(root, relative_paths):
    """Contents of the given files under ``root``."""
    result = {}
    for rel in relative_paths:
        with open(os.path.join(root, rel), "rb") as handle:
            result[rel] = handle.read()
    return result


def deterministic_files(summary):
    """Relative paths of masks, annotations and lists of a summary."""
    paths = [os.path.join(LIST_DIR, n + ".txt") for n in ("train", "val", "trainval")]
    for image_id in summary["ids"]:
        paths += [os.path.join("SegmentationClass", image_id + ".png"),
                  os.path.join("Annotations", image_id + ".xml")]
    return paths


def test_folder_layout_and_lists(demo):
    root = demo["root"]
    for folder in ("JPEGImages", "SegmentationClass", "Annotations", LIST_DIR):
        assert os.path.isdir(os.path.join(root, folder))
    assert os.path.isfile(os.path.join(root, "demo_meta.json"))
    assert not os.path.exists(os.path.join(root, "SegmentationClassAug"))

    train, val, trainval = (read_list(root, n) for n in ("train", "val", "trainval"))
    assert train == sorted(train) == demo["train"]
    assert val == sorted(val) == demo["val"]
    assert trainval == sorted(train + val) == demo["ids"]
    assert not set(train) & set(val)
    assert len(trainval) == len(set(trainval)) == 40
    assert 10 <= len(val) <= 16
    assert all(re.fullmatch(r"20(0[7-9]|1[0-2])_\d{6}", i) for i in trainval)
    for image_id in trainval:
        for rel in ("JPEGImages/%s.jpg", "SegmentationClass/%s.png", "Annotations/%s.xml"):
            assert os.path.isfile(os.path.join(root, rel % image_id))


def test_xml_names_match_masks_and_labels(demo):
    root = demo["root"]
    for image_id in demo["ids"]:
        names = xml_object_names(root, image_id)
        assert 1 <= len(names) <= 3
        assert len(names) == len(set(names))
        assert set(names) == mask_class_names(load_mask(root, image_id))
        assert demo["labels"][image_id] == sorted(VOC_CLASSES.index(n) for n in names)


def test_xml_size_boxes_and_fields(demo):
    root = demo["root"]
    for image_id in demo["ids"]:
        annotation = ET.parse(os.path.join(root, "Annotations", image_id + ".xml")).getroot()
        height, width = load_mask(root, image_id).shape
        assert annotation.find("filename").text == image_id + ".jpg"
        assert int(annotation.find("size/width").text) == width
        assert int(annotation.find("size/height").text) == height
        assert int(annotation.find("size/depth").text) == 3
        for obj in annotation.findall("object"):
            assert obj.find("difficult").text == "0"
            assert obj.find("truncated").text in ("0", "1")
            assert obj.find("pose").text
            box = [int(obj.find("bndbox/" + k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
            assert 1 <= box[0] <= box[2] <= width
            assert 1 <= box[1] <= box[3] <= height


def test_masks_are_voc_palette_pngs(demo):
    expected = np.array(VOC12.palette, np.uint8).reshape(256, 3)
    assert tuple(expected[1]) == (128, 0, 0) and tuple(expected[15]) == (192, 128, 128)
    assert tuple(expected[1]) == (128, 0, 0)
    assert tuple(expected[15]) == (192, 128, 128)
    assert tuple(expected[255]) == (224, 224, 192)
    for image_id in demo["ids"]:
        image = Image.open(os.path.join(demo["root"], "SegmentationClass", image_id + ".png"))
        assert image.mode == "P"
        palette = np.array(image.getpalette()[:768], dtype=np.uint8).reshape(-1, 3)
        assert np.array_equal(palette, expected[:len(palette)])
        values = set(np.unique(np.array(image)).tolist())
        assert values <= set(range(21)) | {255}


def test_void_band_separates_every_border(demo):
    for image_id in demo["ids"]:
        mask = load_mask(demo["root"], image_id)
        assert (mask == 255).any()
        for a, b in ((mask[:, :-1], mask[:, 1:]), (mask[:-1, :], mask[1:, :])):
            touching = (a != b) & (a != 255) & (b != 255)
            assert not touching.any(), image_id
        void_fraction = (mask == 255).mean()
        assert 0.005 < void_fraction < 0.2


def test_jpegs_open_with_mask_size(demo):
    sizes = set()
    for image_id in demo["ids"]:
        image = Image.open(os.path.join(demo["root"], "JPEGImages", image_id + ".jpg"))
        image.load()
        assert image.mode == "RGB"
        assert image.size[::-1] == load_mask(demo["root"], image_id).shape
        assert all(96 <= side <= 192 for side in image.size)
        sizes.add(image.size)
    assert any(w > h for w, h in sizes) and any(h > w for w, h in sizes)


def test_objects_visible_and_coverage(demo):
    for image_id in demo["ids"]:
        mask = load_mask(demo["root"], image_id)
        for cls in demo["labels"][image_id]:
            assert (mask == cls + 1).sum() >= 60
        coverage = ((mask != 0)).mean()
        assert 0.05 <= coverage <= 0.45


def test_every_used_class_appears_twice_in_train(demo):
    used = {cls for image_id in demo["ids"] for cls in demo["labels"][image_id]}
    train_counts = {}
    for image_id in demo["train"]:
        for cls in demo["labels"][image_id]:
            train_counts[cls] = train_counts.get(cls, 0) + 1
    assert used == set(range(20))
    assert all(train_counts.get(cls, 0) >= 2 for cls in used)


def test_person_objects_have_hand_part(demo):
    person_count = 0
    for image_id in demo["ids"]:
        annotation = ET.parse(os.path.join(demo["root"], "Annotations", image_id + ".xml")).getroot()
        for obj in annotation.findall("object"):
            parts = [p.find("name").text for p in obj.findall("part")]
            if obj.find("name").text == "person":
                person_count += 1
                assert parts == ["hand"]
            else:
                assert parts == []
        assert "hand" not in xml_object_names(demo["root"], image_id)
    assert person_count >= 2


def test_same_seed_gives_identical_files(tmp_path):
    first = generate_demo_voc(str(tmp_path / "a"), n_images=9, seed=5)
    second = generate_demo_voc(str(tmp_path / "b"), n_images=9, seed=5)
    other = generate_demo_voc(str(tmp_path / "c"), n_images=9, seed=6)
    assert {k: first[k] for k in ("ids", "train", "val", "labels")} == \
           {k: second[k] for k in ("ids", "train", "val", "labels")}
    paths = deterministic_files(first)
    assert file_bytes(first["root"], paths) == file_bytes(second["root"], paths)
    assert other["ids"] != first["ids"]


def test_with_aug_writes_aug_masks_and_sbd_only_ids(demo_aug):
    root = demo_aug["root"]
    trainval = set(read_list(root, "trainval"))
    aug_ids = {name[:-4] for name in os.listdir(os.path.join(root, "SegmentationClassAug"))}
    extra = aug_ids - trainval
    assert trainval <= aug_ids
    assert extra and extra == set(demo_aug["aug_only"])
    assert len(aug_ids - set(read_list(root, "val"))) > len(read_list(root, "train"))
    for image_id in trainval:
        aug = Image.open(os.path.join(root, "SegmentationClassAug", image_id + ".png"))
        assert aug.mode == "L"
        assert np.array_equal(np.array(aug), load_mask(root, image_id))
    for image_id in extra:
        assert not os.path.exists(os.path.join(root, "SegmentationClass", image_id + ".png"))
        assert os.path.isfile(os.path.join(root, "JPEGImages", image_id + ".jpg"))
        mask = load_mask(root, image_id, "SegmentationClassAug")
        assert set(xml_object_names(root, image_id)) == mask_class_names(mask)


def test_with_aug_keeps_main_files_identical(tmp_path, demo_aug):
    plain = generate_demo_voc(str(tmp_path / "plain"), n_images=12, seed=3)
    paths = deterministic_files(plain)
    assert plain["ids"] == demo_aug["ids"]
    assert file_bytes(plain["root"], paths) == file_bytes(demo_aug["root"], paths)


def test_n_aug_sets_the_number_of_sbd_only_images_and_keeps_the_listed_ones(tmp_path, demo_aug):
    more = generate_demo_voc(str(tmp_path / "more"), n_images=12, seed=3, with_aug=True, n_aug=7)
    assert len(more["aug_only"]) == 7 and not set(more["aug_only"]) & set(more["ids"])
    assert {k: more[k] for k in ("ids", "train", "val")} == {k: demo_aug[k] for k in ("ids", "train", "val")}
    paths = deterministic_files(more)
    assert file_bytes(more["root"], paths) == file_bytes(demo_aug["root"], paths)
    with open(os.path.join(more["root"], "vqa_fg.json")) as f:
        assert set(more["aug_only"]) <= set(json.load(f))
    with pytest.raises(ValueError, match="with_aug"):
        generate_demo_voc(str(tmp_path / "bad"), n_images=12, seed=3, n_aug=2)
    with pytest.raises(ValueError, match="negative"):
        generate_demo_voc(str(tmp_path / "bad"), n_images=12, seed=3, extra_val=-1)


def test_extra_val_images_join_val_and_leave_the_other_images_unchanged(tmp_path, demo_aug):
    more = generate_demo_voc(str(tmp_path / "val"), n_images=12, seed=3, with_aug=True, extra_val=5)
    added = sorted(set(more["val"]) - set(demo_aug["val"]))
    assert len(added) == 5 and set(demo_aug["val"]) <= set(more["val"])
    assert more["train"] == demo_aug["train"] and more["aug_only"] == demo_aug["aug_only"]
    assert sorted(more["ids"]) == sorted(demo_aug["ids"] + added)
    assert read_list(more["root"], "val") == more["val"]
    for image_id in added:
        mask = load_mask(more["root"], image_id)
        assert set(xml_object_names(more["root"], image_id)) == mask_class_names(mask)
    paths = [p for p in deterministic_files(demo_aug) if not p.startswith(LIST_DIR)]
    assert file_bytes(more["root"], paths) == file_bytes(demo_aug["root"], paths)
    assert read_list(more["root"], "train") == read_list(demo_aug["root"], "train")


def test_skips_when_already_generated(tmp_path):
    root = str(tmp_path / "voc")
    first = generate_demo_voc(root, n_images=6, seed=1)
    meta = os.path.join(root, "demo_meta.json")
    mask = os.path.join(root, "SegmentationClass", first["ids"][0] + ".png")
    stamps = (os.stat(meta).st_mtime_ns, os.stat(mask).st_mtime_ns)
    os.utime(mask, ns=(0, 0))

    again = generate_demo_voc(root, n_images=6, seed=1)
    assert again == first
    assert os.stat(mask).st_mtime_ns == 0
    assert os.stat(meta).st_mtime_ns == stamps[0]

    changed = generate_demo_voc(root, n_images=6, seed=2)
    assert changed["ids"] != first["ids"]
    assert sorted(os.listdir(os.path.join(root, "SegmentationClass"))) == \
        sorted(i + ".png" for i in changed["ids"])


def test_regenerates_incomplete_dataset(tmp_path):
    root = str(tmp_path / "voc")
    first = generate_demo_voc(root, n_images=6, seed=1)
    missing = os.path.join(root, "JPEGImages", first["ids"][0] + ".jpg")
    os.remove(missing)
    assert generate_demo_voc(root, n_images=6, seed=1) == first
    assert os.path.isfile(missing)


def test_cli_prints_summary(tmp_path, capsys):
    main(["--out", str(tmp_path / "cli"), "--n", "6", "--seed", "4"])
    output = capsys.readouterr().out
    assert "train 4, val 2" in output
    assert os.path.isfile(os.path.join(str(tmp_path / "cli"), "demo_meta.json"))


# ----------------------------------------------------------------------------
# The world: co-occurring backgrounds, discriminative parts, answers naming them
# ----------------------------------------------------------------------------

def world_scenes(n, seed=11, classes=(0, 2, 6, 7, 11, 14)):
    rng = np.random.default_rng(seed)
    return [draw_scene(rng, list(classes)) for _ in range(n)]


def test_classes_co_occur_with_their_own_background_region():
    objects = homes = 0
    for rgb, label, regions, scene in world_scenes(30):
        kinds = {home_region(o["cls"]) for o in scene["objects"]}
        assert len(set(regions) - kinds) <= 1                 # at most one stray region
        for obj in scene["objects"]:
            objects += 1
            if obj["home"]:
                homes += 1
                region = regions[obj["home"]]
                assert (label[region] == 0).all()          # regions are background
                body = label == obj["cls"] + 1
                grown = body | np.roll(body, 3, 0) | np.roll(body, -3, 0) | np.roll(body, 3, 1) \
                    | np.roll(body, -3, 1)
                assert (grown & region).any()                  # and touch their object
    assert homes >= 0.75 * objects
    assert len({home_region(c) for c in (0, 2, 6, 7, 11, 14)}) == 6


def test_home_regions_also_stray_into_images_without_their_class():
    world = (0, 2, 6, 7, 11, 14)
    strays = 0
    for rgb, label, regions, scene in world_scenes(40, classes=world):
        present = {home_region(o["cls"]) for o in scene["objects"]}
        for kind in set(regions) - present:
            strays += 1
            assert kind in {home_region(c) for c in world}    # a home of the world's classes
            assert (label[regions[kind]] == 0).all()          # on background
            assert not any((regions[kind] & regions[k]).any() for k in present if k in regions)
            shown = rgb[regions[kind]].astype(float).mean(0)
            assert np.abs(shown - REGION_COLOURS[kind]).max() < 30     # painted as its kind
    assert 0.4 * 40 <= strays <= 40      # drawn in 80% of them, part of it seen in about 65%


def test_objects_carry_a_small_part_of_their_own_colour():
    rng = np.random.default_rng(5)
    for _ in range(10):
        width, height = sample_image_size(rng, 96, 192)
        objects, label = layout_image(rng, [2, 14], width, height)
        rgb, _, parts = render_scene(rng, objects, width, height)
        for obj, part in zip(objects, parts):
            body = object_mask(height, width, obj)
            assert part.any() and not (part & ~body).any()
            assert 0.02 <= part.sum() / body.sum() <= 0.2
            visible = part & (label == obj["cls"] + 1)
            if visible.sum() > 20:
                mean = rgb[visible].astype(float).mean(0)
                assert np.abs(mean - part_colour(obj["cls"])).max() < 40
    assert colour_name(part_colour(2)) != colour_name(part_colour(14))


def test_vqa_answers_name_what_was_drawn():
    for rgb, label, regions, scene in world_scenes(12, seed=4):
        fg, bg = image_answers(scene)
        for obj in scene["objects"]:
            name = VOC_CLASSES[obj["cls"]]
            answers = fg[name]["answers"]
            assert obj["shape"] in answers and name in answers
            assert "%s spot" % colour_name(part_colour(obj["cls"])) in answers
            background = bg[name]["answers"]
            assert len(background) == 10 and name not in background
            assert set(regions) <= set(background)
            if obj["home"]:
                assert background[0] == obj["home"]
            others = {VOC_CLASSES[o["cls"]] for o in scene["objects"]} - {name}
            assert others <= set(background)


def test_dataset_answers_name_the_image_regions_its_own_first(demo):
    with open(os.path.join(demo["root"], "vqa_bg.json")) as f:
        bg = json.load(f)
    world = {home_region(c) for labels in demo["labels"].values() for c in labels}
    named = strays = 0
    for image_id in demo["ids"]:
        homes = {home_region(c) for c in demo["labels"][image_id]}
        for name, entry in bg[image_id].items():
            regions = set(entry["answers"]) & set(REGION_KINDS)
            assert regions <= world and len(regions - homes) <= 1
            home = home_region(VOC_CLASS_NAMES.index(name))
            if home in regions:
                assert entry["answers"][0] == home
                named += 1
            strays += bool(regions - homes)
    assert named >= 0.75 * sum(len(demo["labels"][i]) for i in demo["ids"])
    assert strays > 0
