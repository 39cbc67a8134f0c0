"""Generate a small synthetic dataset in the PASCAL VOC 2012 folder layout.

The dataset is meant for demos and tests of the QA-CLIMS pipeline: it has
the same files and formats as VOC 2012 (JPEG images, palette PNG masks with a
void band around object borders, XML annotations, ImageSets lists and,
optionally, an SBD-style ``SegmentationClassAug`` folder), but the images are
synthetic.  Every class has its own look (a shape, a hue and, for half of the
classes, stripes), so a small CNN can learn the image-level labels.

Everything is drawn from one ``numpy.random.default_rng(seed)``, so the same
arguments give byte-identical masks, annotations and lists.

Usage::

    python tools/make_demo_voc.py --out DIR [--n 40] [--seed 0] [--with_aug]
"""
import argparse
import colorsys
import io
import json
import os
import sys
import time
import xml.etree.ElementTree as ET

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data.registry import DATASETS  # noqa: E402
from misc.io import atomic_write  # noqa: E402
from tools.make_demo_vqa import colour_name, write_demo_vqa  # noqa: E402
from voc12.devkit import XML_CLASS_NAMES as VOC_CLASSES  # noqa: E402


#: Shape drawn for each class (index = 0-based class id).  Classes ``c`` and
#: ``c + 10`` share a shape but differ in hue and in texture (stripes).
CLASS_SHAPES = (
    "ellipse", "rectangle", "triangle", "star", "ring",
    "cross", "diamond", "hexagon", "crescent", "bowtie",
) * 2

#: Classes sampled more often, so each of them appears many times in a small set.
FAVOURED_CLASSES = (14, 6, 11, 7, 2, 0, 5, 12)  # person car dog cat bird aeroplane bus horse
FAVOURED_WEIGHT = 3.0

VOID = 255
MIN_VISIBLE_PIXELS = 60
MIN_OBJECT_AREA = 4 * MIN_VISIBLE_PIXELS
MAX_OBJECTS = 3
JPEG_QUALITY = 95
POSES = ("Unspecified", "Frontal", "Left", "Right", "Rear")
META_NAME = "demo_meta.json"
META_VERSION = 4
EXTRA_VAL_STREAM = 1  # the random stream of the images of extra_val
PLACEMENT_TRIES = 30
PART_TRIES = 12

#: The world: each class co-occurs with its own background region (as boats
#: with water), drawn around the object with this probability; with
#: ``STRAY_PROBABILITY`` an image also shows the home region of a class of the
#: world it does not contain (as water in a photo of a dog), so a region says
#: much about its class but not everything; each object carries a small,
#: saturated part (radius a fraction of the object's) that is its most
#: discriminative cue.
REGION_KINDS = ("water", "railway", "grass", "sand", "snow",
                "road", "sky", "brick wall", "carpet", "leaves")
REGION_COLOURS = {"water": (40, 90, 170), "railway": (115, 85, 60), "grass": (60, 140, 50),
                  "sand": (215, 190, 135), "snow": (232, 238, 245), "road": (70, 70, 78),
                  "sky": (140, 190, 240), "brick wall": (150, 70, 50), "carpet": (120, 60, 115),
                  "leaves": (105, 125, 30)}
HOME_PROBABILITY = 0.9
STRAY_PROBABILITY = 0.8
STRAY_RADIUS = (0.12, 0.25)  # the radius of region_mask's ellipse, of the shorter side
REGION_SCALE = (2.0, 1.3)
PART_RADIUS = 0.22
LAYOUT_TRIES = 20


def world_settings():
    """The constants the world's scenes are drawn with: a model trained on scenes drawn
    under other ones (the backbone pretraining, the tiny CLIP) is not this world's."""
    return {"version": META_VERSION, "home_probability": HOME_PROBABILITY,
            "stray_probability": STRAY_PROBABILITY, "stray_radius": list(STRAY_RADIUS),
            "region_scale": list(REGION_SCALE), "part_radius": PART_RADIUS}


def class_hue(class_id):
    """Hue in [0, 1) of a 0-based class id, spread by the golden ratio."""
    return (class_id * 0.6180339887) % 1.0


def has_stripes(class_id):
    """Whether objects of this 0-based class carry a striped texture."""
    return class_id >= 10


# ----------------------------------------------------------------------------
# Shapes
# ----------------------------------------------------------------------------

def regular_polygon_mask(u, v, n_sides):
    """Inside test for a regular polygon of circumradius 1 (one vertex up)."""
    radius = np.hypot(u, v)
    sector = 2.0 * np.pi / n_sides
    angle = np.mod(np.arctan2(u, v), sector) - sector / 2.0
    return radius * np.cos(angle) <= np.cos(sector / 2.0)


def shape_mask(kind, u, v):
    """Inside test of a shape of radius ~1 in local object coordinates."""
    radius = np.hypot(u, v)
    if kind == "ellipse":
        return radius <= 1.0
    if kind == "rectangle":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 0.7)
    if kind == "triangle":
        return regular_polygon_mask(u, v, 3)
    if kind == "star":
        return radius <= 0.6 + 0.4 * np.cos(5.0 * np.arctan2(u, v))
    if kind == "ring":
        return (radius <= 1.0) & (radius >= 0.55)
    if kind == "cross":
        au, av = np.abs(u), np.abs(v)
        return ((au <= 1.0) & (av <= 0.33)) | ((au <= 0.33) & (av <= 1.0))
    if kind == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if kind == "hexagon":
        return regular_polygon_mask(u, v, 6)
    if kind == "crescent":
        return (radius <= 1.0) & (np.hypot(u - 0.45, v) > 0.7)
    if kind == "bowtie":
        au, av = np.abs(u), np.abs(v)
        return (au <= 1.0) & (av <= 1.0) & (av <= 0.25 + au)
    raise ValueError("unknown shape kind: %r" % kind)


def unit_shape_area(kind, aspect):
    """Area of a shape of radius 1 and the given aspect, estimated on a grid."""
    grid = np.linspace(-1.5 * max(aspect, 1.0), 1.5 * max(aspect, 1.0), 96)
    u, v = np.meshgrid(grid, grid)
    cell = (grid[1] - grid[0]) ** 2
    return float(shape_mask(kind, u / aspect, v).sum() * cell)


def local_coordinates(height, width, obj):
    """Pixel coordinates in the object's frame (rotated, radius-normalised)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    dx, dy = xs - obj["cx"], ys - obj["cy"]
    cos_t, sin_t = np.cos(obj["angle"]), np.sin(obj["angle"])
    u = (cos_t * dx + sin_t * dy) / (obj["radius"] * obj["aspect"])
    v = (-sin_t * dx + cos_t * dy) / obj["radius"]
    return u, v


def object_mask(height, width, obj):
    """Boolean ``(height, width)`` mask covered by the object."""
    u, v = local_coordinates(height, width, obj)
    return shape_mask(CLASS_SHAPES[obj["cls"]], u, v)


# ----------------------------------------------------------------------------
# Layout
# ----------------------------------------------------------------------------

def sample_image_size(rng, min_side, max_side):
    """Random ``(width, height)``: landscape or portrait with equal chance."""
    long_side = int(rng.integers((min_side + max_side) // 2, max_side + 1))
    short_side = int(rng.integers(min_side, long_side + 1))
    if rng.random() < 0.5:
        return long_side, short_side
    return short_side, long_side


def sample_object(rng, cls, width, height, area_px):
    """Random placement (centre, radius, aspect, rotation) for one object."""
    aspect = float(rng.uniform(0.75, 1.35))
    radius = float(np.sqrt(area_px / unit_shape_area(CLASS_SHAPES[cls], aspect)))
    margin = 0.5 * radius
    return {
        "cls": cls,
        "cx": float(rng.uniform(min(margin, width / 2), max(width - margin, width / 2))),
        "cy": float(rng.uniform(min(margin, height / 2), max(height - margin, height / 2))),
        "radius": radius,
        "aspect": aspect,
        "angle": float(rng.uniform(0.0, 2.0 * np.pi)),
    }


def void_band(label):
    """Pixels next to a label change: a ~2 px band around every border."""
    band = np.zeros(label.shape, dtype=bool)
    horizontal = label[:, :-1] != label[:, 1:]
    vertical = label[:-1, :] != label[1:, :]
    band[:, :-1] |= horizontal
    band[:, 1:] |= horizontal
    band[:-1, :] |= vertical
    band[1:, :] |= vertical
    return band


def all_objects_visible(label, classes):
    """Whether every class keeps ``MIN_VISIBLE_PIXELS`` non-void pixels."""
    clear = ~void_band(label)
    return all(((label == cls + 1) & clear).sum() >= MIN_VISIBLE_PIXELS for cls in classes)


def try_layout(rng, classes, width, height, coverage):
    """Place the objects in order; return ``(objects, label)`` or None on failure.

    ``label`` holds 1-based class ids (0 = background) before voiding.
    Later objects occlude earlier ones; each placement is retried until every
    object placed so far stays visible enough.
    """
    shares = rng.uniform(0.5, 1.5, size=len(classes))
    areas = np.maximum(coverage * width * height * shares / shares.sum(), MIN_OBJECT_AREA)
    label = np.zeros((height, width), dtype=np.uint8)
    objects = []
    for cls, area_px in zip(classes, areas):
        for _ in range(PLACEMENT_TRIES):
            obj = sample_object(rng, cls, width, height, area_px)
            candidate = label.copy()
            candidate[object_mask(height, width, obj)] = cls + 1
            if all_objects_visible(candidate, [o["cls"] for o in objects] + [cls]):
                objects.append(obj)
                label = candidate
                break
        else:
            return None
    return objects, label


def layout_image(rng, classes, width, height):
    """Place all objects, lowering the coverage after failed layouts."""
    coverage = float(rng.uniform(0.12, 0.35))
    for _ in range(LAYOUT_TRIES):
        result = try_layout(rng, classes, width, height, coverage)
        if result is not None:
            return result
        coverage = max(0.08, coverage * 0.85)
    raise RuntimeError("could not place classes %s in a %dx%d image" % (classes, width, height))


# ----------------------------------------------------------------------------
# Painting
# ----------------------------------------------------------------------------

def paint_background(rng, width, height):
    """Smooth random noise around a random, mostly grey base colour (float RGB)."""
    base = rng.uniform(60, 200) + rng.uniform(-35, 35, size=3)
    grid_h, grid_w = (int(n) for n in rng.integers(3, 8, size=2))
    brightness = rng.normal(0, 25, size=(grid_h, grid_w, 1))
    coarse = np.clip(base + brightness + rng.normal(0, 12, size=(grid_h, grid_w, 3)), 0, 255)
    smooth = Image.fromarray(coarse.astype(np.uint8), "RGB").resize((width, height), Image.BICUBIC)
    return np.asarray(smooth, dtype=np.float32) + rng.normal(0, 6, size=(height, width, 3))


def home_region(class_id):
    """The background region kind a class co-occurs with (docs/demo: the world)."""
    return REGION_KINDS[class_id % len(REGION_KINDS)]


def region_mask(height, width, obj):
    """Where an object's home region lies: a wide ellipse centred below the object."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    r = obj["radius"] * max(obj["aspect"], 1.0)
    du = (xs - obj["cx"]) / (REGION_SCALE[0] * r)
    dv = (ys - obj["cy"] - 0.5 * r) / (REGION_SCALE[1] * r)
    return du ** 2 + dv ** 2 <= 1.0


def region_pattern(kind, height, width):
    """Brightness pattern in [-1, 1] of a region kind over the whole image."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind in ("water", "sky"):
        return np.sin(2 * np.pi * (ys / 7.0 + 0.15 * np.sin(2 * np.pi * xs / 23.0)))
    if kind in ("railway", "road"):
        return np.where((np.mod(ys, 12) < 2) | (np.mod(xs, 16) < 3), -1.0, 0.3)
    if kind in ("grass", "leaves"):
        return np.sin(2 * np.pi * xs / 4.0) * np.cos(2 * np.pi * ys / 9.0)
    if kind in ("brick wall", "carpet"):
        return np.where((np.mod(ys, 10) < 2) | (np.mod(xs + 8 * (np.mod(ys // 10, 2)), 16) < 2),
                        -1.0, 0.4)
    return np.sign(np.sin(2 * np.pi * xs / 10.0) * np.sin(2 * np.pi * ys / 10.0))


def stray_region(rng, objects, world_classes, height, width):
    """``(kind, mask)`` of a region whose class is absent from the image: with probability
    ``STRAY_PROBABILITY``, the home region of a class of ``world_classes`` that no object
    of the image has, as an ellipse at a random place; None otherwise or when every home
    region of the world is present."""
    present = {home_region(obj["cls"]) for obj in objects}
    kinds = sorted({home_region(c) for c in world_classes} - present)
    if not kinds or rng.random() >= STRAY_PROBABILITY:
        return None
    kind = kinds[int(rng.integers(len(kinds)))]
    place = {"cx": rng.uniform(0, width), "cy": rng.uniform(0, height), "aspect": 1.0,
             "radius": rng.uniform(*STRAY_RADIUS) * min(height, width)}
    return kind, region_mask(height, width, place)


def paint_region(rng, canvas, kind, mask):
    """Paint a background region of ``kind`` (its colour and texture) where ``mask``."""
    height, width = canvas.shape[:2]
    colour = np.array(REGION_COLOURS[kind], np.float32) + rng.uniform(-12, 12, size=3)
    shade = region_pattern(kind, height, width)[mask][:, None]
    canvas[mask] = colour + 28.0 * shade + rng.normal(0, 6, size=(int(mask.sum()), 3))


def object_colour(rng, cls):
    """Random RGB colour (0..255) around the class hue, muted: the part is what stands out."""
    hue = (class_hue(cls) + rng.uniform(-0.02, 0.02)) % 1.0
    rgb = colorsys.hsv_to_rgb(hue, rng.uniform(0.45, 0.7), rng.uniform(0.55, 0.8))
    return np.array(rgb, dtype=np.float32) * 255.0


def part_colour(cls):
    """The saturated colour of a class's discriminative part (opposite its body hue)."""
    rgb = colorsys.hsv_to_rgb((class_hue(cls) + 0.5) % 1.0, 1.0, 1.0)
    return np.array(rgb, dtype=np.float32) * 255.0


def part_mask(rng, mask, u, v, obj):
    """A small disc inside the object: its most-discriminative part (a boolean mask)."""
    ys, xs = np.nonzero(mask)
    radius = PART_RADIUS * obj["radius"]
    yy, xx = np.mgrid[0:mask.shape[0], 0:mask.shape[1]]
    best, best_inside = None, -1.0
    for _ in range(PART_TRIES):
        k = int(rng.integers(len(ys)))
        disc = (yy - ys[k]) ** 2 + (xx - xs[k]) ** 2 <= radius ** 2
        inside = (disc & mask).sum() / max(disc.sum(), 1)
        if inside > best_inside:
            best, best_inside = disc & mask, inside
        if inside >= 0.95:
            break
    return best


def paint_object(rng, canvas, obj):
    """Paint one object (muted body, texture noise, optional stripes, bright part) in place;
    returns its part mask."""
    height, width = canvas.shape[:2]
    u, v = local_coordinates(height, width, obj)
    mask = shape_mask(CLASS_SHAPES[obj["cls"]], u, v)
    pixels = np.repeat(object_colour(rng, obj["cls"])[None, :], mask.sum(), axis=0)
    if has_stripes(obj["cls"]):
        dark = np.sin(2.0 * np.pi * 2.5 * u[mask]) < 0
        pixels[dark] *= 0.6
    canvas[mask] = pixels + rng.normal(0, 10, size=pixels.shape)
    part = part_mask(rng, mask, u, v, obj)
    canvas[part] = part_colour(obj["cls"]) + rng.normal(0, 8, size=(int(part.sum()), 3))
    return part


def render_scene(rng, objects, width, height, world_classes=()):
    """Paint a scene: background, a stray region (:func:`stray_region`, the home region
    of a class of ``world_classes`` that the image does not contain), each object's
    home region (with probability ``HOME_PROBABILITY``), then the objects with their parts.

    Returns ``(rgb uint8, regions, parts)``: ``regions`` maps each drawn region
    kind to its boolean mask (objects painted over it excluded), ``parts`` the
    part mask of each object.
    """
    canvas = paint_background(rng, width, height)
    regions = {}
    stray = stray_region(rng, objects, world_classes, height, width)
    if stray is not None:
        paint_region(rng, canvas, *stray)
    for obj in objects:
        if rng.random() < HOME_PROBABILITY:
            kind = home_region(obj["cls"])
            mask = region_mask(height, width, obj)
            paint_region(rng, canvas, kind, mask)
            regions[kind] = regions.get(kind, np.zeros_like(mask)) | mask
    if stray is not None:
        kind, mask = stray
        for home in regions.values():
            mask = mask & ~home
        regions[kind] = mask
    parts = [paint_object(rng, canvas, obj) for obj in objects]
    covered = np.zeros((height, width), bool)
    for obj in objects:
        covered |= object_mask(height, width, obj)
    regions = {kind: mask & ~covered for kind, mask in regions.items() if (mask & ~covered).any()}
    return np.clip(canvas, 0, 255).astype(np.uint8), regions, parts


def render_image(rng, objects, width, height):
    """The painted scene of :func:`render_scene` as a uint8 RGB array."""
    return render_scene(rng, objects, width, height)[0]


# ----------------------------------------------------------------------------
# Dataset plan: ids, split, classes per image
# ----------------------------------------------------------------------------

def sample_ids(rng, count, taken=()):
    """``count`` new unique VOC-like ids ``YYYY_NNNNNN``, sorted."""
    taken = set(taken)
    new = set()
    while len(new) < count:
        image_id = "%04d_%06d" % (rng.integers(2007, 2013), rng.integers(1, 8000))
        if image_id not in taken:
            new.add(image_id)
    return sorted(new)


def split_ids(rng, ids):
    """Deterministic train/val split with about one third of the ids in val."""
    n_val = int(round(len(ids) / 3.0))
    val_index = set(rng.choice(len(ids), size=n_val, replace=False).tolist())
    train = [i for k, i in enumerate(ids) if k not in val_index]
    val = [i for k, i in enumerate(ids) if k in val_index]
    return train, val


def choose_class_subset(rng, n_classes):
    """The ``n_classes`` classes used in the dataset, favoured classes first.

    Callers cap ``n_classes`` at the number of train images: with two
    guaranteed slots per image, at most that many classes can appear twice.
    """
    others = [c for c in range(len(VOC_CLASSES)) if c not in FAVOURED_CLASSES]
    priority = list(FAVOURED_CLASSES) + rng.permutation(others).tolist()
    return sorted(priority[:min(len(VOC_CLASSES), n_classes)])


def class_weights(subset):
    """Sampling probabilities over ``subset`` biased toward favoured classes."""
    weights = np.array([FAVOURED_WEIGHT if c in FAVOURED_CLASSES else 1.0 for c in subset])
    return weights / weights.sum()


def guaranteed_train_classes(rng, subset, n_train):
    """Per train image, the classes it must contain so each subset class appears twice.

    Both copies of a class sit at consecutive positions of a round-robin
    deal, so they land in two different images.
    """
    assigned = [[] for _ in range(n_train)]
    order = rng.permutation(subset).tolist()
    for position, cls in enumerate(c for c in order for _ in range(2)):
        assigned[position % n_train].append(cls)
    return assigned


def sample_image_classes(rng, subset, required=()):
    """1..3 distinct classes for an image: ``required`` plus weighted extras."""
    required = list(required)
    n_objects = max(len(required), int(rng.integers(1, MAX_OBJECTS + 1)))
    pool = [c for c in subset if c not in required]
    n_extra = min(n_objects - len(required), len(pool))
    extra = rng.choice(pool, size=n_extra, replace=False, p=class_weights(pool)).tolist() if n_extra else []
    classes = required + [int(c) for c in extra]
    return [classes[k] for k in rng.permutation(len(classes))]


def plan_classes(rng, train, val, subset):
    """Drawing-order class list for every listed image."""
    required = guaranteed_train_classes(rng, subset, len(train))
    plan = {image_id: sample_image_classes(rng, subset, req) for image_id, req in zip(train, required)}
    plan.update({image_id: sample_image_classes(rng, subset) for image_id in val})
    return plan


# ----------------------------------------------------------------------------
# Annotations
# ----------------------------------------------------------------------------

def bounding_box(mask):
    """1-based inclusive ``(xmin, ymin, xmax, ymax)`` of a boolean mask."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()) + 1, int(ys.min()) + 1, int(xs.max()) + 1, int(ys.max()) + 1


def hand_box(rng, box):
    """A small box inside a person box, standing in for VOC's 'hand' part."""
    xmin, ymin, xmax, ymax = box
    side_w, side_h = max(1, (xmax - xmin) // 4), max(1, (ymax - ymin) // 4)
    x0 = int(rng.integers(xmin, xmax - side_w + 1))
    y0 = int(rng.integers(ymin, ymax - side_h + 1))
    return x0, y0, x0 + side_w, y0 + side_h


def add_box(parent, box):
    """Append a ``<bndbox>`` element with the given corners."""
    element = ET.SubElement(parent, "bndbox")
    for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
        ET.SubElement(element, tag).text = str(value)


def annotation_xml(rng, image_id, label, objects):
    """VOC-style XML bytes for one image (objects in drawing order)."""
    height, width = label.shape
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2012"
    ET.SubElement(root, "filename").text = image_id + ".jpg"
    ET.SubElement(ET.SubElement(root, "source"), "database").text = "QA-CLIMS synthetic demo"
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "1"
    for obj in objects:
        box = bounding_box(label == obj["cls"] + 1)
        element = ET.SubElement(root, "object")
        ET.SubElement(element, "name").text = VOC_CLASSES[obj["cls"]]
        ET.SubElement(element, "pose").text = POSES[int(rng.integers(len(POSES)))]
        touches_border = box[0] == 1 or box[1] == 1 or box[2] == width or box[3] == height
        ET.SubElement(element, "truncated").text = "1" if touches_border else "0"
        ET.SubElement(element, "difficult").text = "0"
        add_box(element, box)
        if VOC_CLASSES[obj["cls"]] == "person":
            part = ET.SubElement(element, "part")
            ET.SubElement(part, "name").text = "hand"
            add_box(part, hand_box(rng, box))
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="utf-8") + b"\n"


# ----------------------------------------------------------------------------
# File output
# ----------------------------------------------------------------------------

def write_bytes_atomic(path, data):
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    with atomic_write(path) as handle:
        handle.write(data)


def encode_image(image, fmt, **options):
    """Encode a PIL image to bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def palette_png(mask):
    """Mode 'P' PNG bytes of a class-id mask with the VOC colour map."""
    height, width = mask.shape
    image = Image.frombytes("P", (width, height), np.ascontiguousarray(mask).tobytes())
    image.putpalette(DATASETS["voc12"].palette)
    return encode_image(image, "PNG")


def grayscale_png(mask):
    """Mode 'L' PNG bytes of a class-id mask (SBD / SegmentationClassAug style)."""
    return encode_image(Image.fromarray(np.ascontiguousarray(mask), "L"), "PNG")


def generate_image(rng, classes, min_side, max_side, world_classes=()):
    """Lay out and paint one image (``world_classes``: those of the dataset, whose home
    regions may stray into it).

    Returns ``(rgb, mask, objects, label, regions, parts)``: the uint8 RGB
    image, the class-id mask with the void band, the placed objects, the mask
    before voiding and the drawn regions and parts of :func:`render_scene`.
    """
    width, height = sample_image_size(rng, min_side, max_side)
    objects, label = layout_image(rng, classes, width, height)
    rgb, regions, parts = render_scene(rng, objects, width, height, world_classes)
    mask = label.copy()
    mask[void_band(label)] = VOID
    return rgb, mask, objects, label, regions, parts


def draw_scene(rng, class_ids, sides=(96, 192)):
    """One image of the world held in memory (for the tiny CLIP and the backbone
    pretraining): ``(rgb, label, regions, scene description)`` of 1..3 of ``class_ids``."""
    width, height = sample_image_size(rng, *sides)
    objects, label = layout_image(rng, sample_image_classes(rng, class_ids), width, height)
    rgb, regions, _ = render_scene(rng, objects, width, height, class_ids)
    return rgb, label, regions, scene_description(rgb, label, objects, regions)


def scene_description(rgb, label, objects, regions):
    """What was drawn in an image, for its VQA answers: per object its class,
    shape, texture, body and part colour names and its home region kind (None
    when not drawn); the region kinds (largest first) and the plain
    background's colour name."""
    plain = (label == 0) & ~np.any(list(regions.values()) or [np.zeros_like(label, bool)], axis=0)
    background = rgb[plain].mean(axis=0) if plain.any() else rgb.reshape(-1, 3).mean(axis=0)
    described = []
    for obj in objects:
        pixels = rgb[label == obj["cls"] + 1]
        described.append({"cls": obj["cls"], "shape": CLASS_SHAPES[obj["cls"]],
                          "striped": has_stripes(obj["cls"]),
                          "hue": colour_name(pixels.mean(axis=0)),
                          "part": colour_name(part_colour(obj["cls"])),
                          "home": home_region(obj["cls"]) if home_region(obj["cls"]) in regions
                          else None})
    kinds = sorted(regions, key=lambda k: -int(regions[k].sum()))
    return {"objects": described, "regions": kinds, "background": colour_name(background),
            "bright": bool(np.mean(background) > 128)}


def write_image_files(rng, root, image_id, classes, sides, palette_mask, aug_mask, world_classes):
    """Generate one image (of ``classes``, among the dataset's ``world_classes``), write its
    JPEG, XML and the requested masks.

    ``sides`` is ``(min_side, max_side)``; ``palette_mask`` writes
    ``SegmentationClass/<id>.png`` and ``aug_mask`` writes
    ``SegmentationClassAug/<id>.png``.  Returns the sorted 0-based classes
    and the :func:`scene_description`.
    """
    rgb, mask, objects, label, regions, _ = generate_image(rng, classes, *sides, world_classes)
    write_bytes_atomic(os.path.join(root, "JPEGImages", image_id + ".jpg"),
                       encode_image(Image.fromarray(rgb, "RGB"), "JPEG", quality=JPEG_QUALITY))
    if palette_mask:
        write_bytes_atomic(os.path.join(root, "SegmentationClass", image_id + ".png"), palette_png(mask))
    if aug_mask:
        write_bytes_atomic(os.path.join(root, "SegmentationClassAug", image_id + ".png"), grayscale_png(mask))
    write_bytes_atomic(os.path.join(root, "Annotations", image_id + ".xml"),
                       annotation_xml(rng, image_id, label, objects))
    return sorted(obj["cls"] for obj in objects), scene_description(rgb, label, objects, regions)


def write_id_list(path, ids):
    """Write sorted ids, one per line."""
    write_bytes_atomic(path, "".join(i + "\n" for i in sorted(ids)).encode("ascii"))


def make_folders(root, with_aug):
    """Create the VOC folder layout (existing folders are kept)."""
    folders = ["JPEGImages", "SegmentationClass", "Annotations", os.path.join("ImageSets", "Segmentation")]
    if with_aug:
        folders.append("SegmentationClassAug")
    for folder in folders:
        os.makedirs(os.path.join(root, folder), exist_ok=True)


# ----------------------------------------------------------------------------
# Metadata / skip logic
# ----------------------------------------------------------------------------

def expected_files(root, summary, with_aug):
    """Paths that a complete dataset with this summary must contain."""
    paths = [os.path.join(root, "ImageSets", "Segmentation", name + ".txt")
             for name in ("train", "val", "trainval")]
    paths += [os.path.join(root, name) for name in ("vqa_fg.json", "vqa_bg.json")]
    for image_id in summary["ids"]:
        paths += [os.path.join(root, "JPEGImages", image_id + ".jpg"),
                  os.path.join(root, "SegmentationClass", image_id + ".png"),
                  os.path.join(root, "Annotations", image_id + ".xml")]
        if with_aug:
            paths.append(os.path.join(root, "SegmentationClassAug", image_id + ".png"))
    for image_id in summary["aug_only"]:
        paths += [os.path.join(root, "JPEGImages", image_id + ".jpg"),
                  os.path.join(root, "SegmentationClassAug", image_id + ".png"),
                  os.path.join(root, "Annotations", image_id + ".xml")]
    return paths


def read_meta(root):
    """The stored metadata dict, or None if missing or unreadable."""
    try:
        with open(os.path.join(root, META_NAME), "r", encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def existing_summary(root, args):
    """Summary of a complete dataset already generated with ``args``, else None."""
    meta = read_meta(root)
    if not meta or meta.get("version") != META_VERSION or meta.get("args") != args or "summary" not in meta:
        return None
    summary = dict(meta["summary"], root=root)
    if not all(os.path.isfile(p) for p in expected_files(root, summary, args["with_aug"])):
        return None
    return summary


def remove_stale_files(root, old_meta, summary, with_aug):
    """Delete files of a previous generation that the new one does not write."""
    old_summary = dict(old_meta["summary"], root=root)
    keep = set(expected_files(root, summary, with_aug))
    for path in expected_files(root, old_summary, old_meta["args"].get("with_aug", False)):
        if path not in keep and os.path.isfile(path):
            os.remove(path)


def write_meta(root, args, summary):
    """Record the arguments and summary; written last to mark completion."""
    stored = {key: summary[key] for key in ("ids", "train", "val", "aug_only", "labels")}
    data = json.dumps({"version": META_VERSION, "args": args, "summary": stored}, indent=1, sort_keys=True)
    write_bytes_atomic(os.path.join(root, META_NAME), data.encode("utf-8"))


# ----------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------

def generate_demo_voc(out_dir, n_images=40, seed=0, with_aug=False, min_side=96, max_side=192,
                      max_classes=len(VOC_CLASSES), n_aug=None, extra_val=0):
    """Generate (or reuse) a synthetic VOC 2012-layout dataset in ``out_dir``.

    Returns a dict with ``ids`` (all listed ids, sorted), ``train``, ``val``,
    ``aug_only`` (SBD-only ids, only with ``with_aug``: ``n_aug`` of them, by
    default an eighth of ``n_images`` and at least 2), ``labels``
    ({id: sorted 0-based class ids}, for every generated image) and ``root``.
    If ``out_dir`` already holds a complete dataset made with the same
    arguments, nothing is written and the stored summary is returned.
    ``max_classes`` caps the number of classes drawn (fewer classes give more
    examples per class, so a short training run learns them). ``extra_val``
    adds val images beyond the third of ``n_images``, drawn from a random
    stream of their own: the other images do not change with their number.
    """
    if n_images < 3:
        raise ValueError("n_images must be at least 3 (two train images and one val image)")
    if not 48 <= min_side <= max_side:
        raise ValueError("need 48 <= min_side <= max_side")
    if n_aug is None:
        n_aug = max(2, n_images // 8) if with_aug else 0
    if n_aug < 0 or extra_val < 0:
        raise ValueError("n_aug and extra_val count images: they cannot be negative")
    if n_aug and not with_aug:
        raise ValueError("n_aug SBD-only images need with_aug=True")
    root = str(out_dir)
    args = {"n_images": int(n_images), "seed": int(seed), "with_aug": bool(with_aug),
            "min_side": int(min_side), "max_side": int(max_side), "max_classes": int(max_classes),
            "n_aug": int(n_aug), "extra_val": int(extra_val)}
    summary = existing_summary(root, args)
    if summary is not None:
        return summary

    old_meta = read_meta(root)
    if old_meta is not None:
        os.remove(os.path.join(root, META_NAME))
    make_folders(root, with_aug)

    rng = np.random.default_rng(seed)
    ids = sample_ids(rng, n_images)
    train, val = split_ids(rng, ids)
    subset = choose_class_subset(rng, min(len(train), max_classes))
    plan = plan_classes(rng, train, val, subset)
    sides = (min_side, max_side)
    labels, scenes = {}, {}
    for image_id in ids:
        labels[image_id], scenes[image_id] = write_image_files(
            rng, root, image_id, plan[image_id], sides, True, with_aug, subset)
    aug_only = []
    if n_aug:
        aug_only = sample_ids(rng, n_aug, taken=ids)
        for image_id in aug_only:
            classes = sample_image_classes(rng, subset)
            labels[image_id], scenes[image_id] = write_image_files(rng, root, image_id, classes,
                                                                   sides, False, True, subset)
    if extra_val:
        val_rng = np.random.default_rng([seed, EXTRA_VAL_STREAM])
        more_val = sample_ids(val_rng, extra_val, taken=ids + aug_only)
        for image_id in more_val:
            classes = sample_image_classes(val_rng, subset)
            labels[image_id], scenes[image_id] = write_image_files(val_rng, root, image_id, classes,
                                                                   sides, True, with_aug, subset)
        val = sorted(val + more_val)
        ids = sorted(ids + more_val)

    list_dir = os.path.join(root, "ImageSets", "Segmentation")
    write_id_list(os.path.join(list_dir, "train.txt"), train)
    write_id_list(os.path.join(list_dir, "val.txt"), val)
    write_id_list(os.path.join(list_dir, "trainval.txt"), ids)

    summary = {"ids": ids, "train": train, "val": val, "aug_only": aug_only,
               "labels": {k: labels[k] for k in sorted(labels)}, "root": root}
    write_demo_vqa(root, scenes)
    if old_meta is not None and "summary" in old_meta and "args" in old_meta:
        remove_stale_files(root, old_meta, summary, with_aug)
    write_meta(root, args, summary)
    return summary


def class_counts(summary, ids):
    """Number of images per class name among ``ids``."""
    counts = {}
    for image_id in ids:
        for cls in summary["labels"][image_id]:
            counts[VOC_CLASSES[cls]] = counts.get(VOC_CLASSES[cls], 0) + 1
    return counts


def main(argv=None):
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="Generate a synthetic PASCAL VOC 2012-layout demo dataset.")
    parser.add_argument("--out", required=True, help="output folder (the VOC root)")
    parser.add_argument("--n", type=int, default=40, help="number of listed images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_classes", type=int, default=len(VOC_CLASSES),
                        help="number of classes drawn")
    parser.add_argument("--with_aug", action="store_true",
                        help="also write SegmentationClassAug and a few SBD-only images")
    parser.add_argument("--extra_val", type=int, default=0,
                        help="val images beyond a third of --n (their own random stream)")
    parser.add_argument("--n_aug", type=int, default=None,
                        help="number of SBD-only images with --with_aug (default: n / 8, at least 2)")
    options = parser.parse_args(argv)
    start = time.time()
    summary = generate_demo_voc(options.out, n_images=options.n, seed=options.seed, with_aug=options.with_aug,
                                max_classes=options.max_classes, n_aug=options.n_aug,
                                extra_val=options.extra_val)
    print("demo VOC dataset at %s (%.2fs)" % (summary["root"], time.time() - start))
    print("  images: %d (train %d, val %d, SBD-only %d)" % (
        len(summary["ids"]), len(summary["train"]), len(summary["val"]), len(summary["aug_only"])))
    counts = class_counts(summary, summary["train"])
    print("  train images per class: " + ", ".join("%s=%d" % (k, counts[k]) for k in sorted(counts)))


if __name__ == "__main__":
    main()
