"""Train a tiny CLIP that understands the demo's synthetic world (README: the demo).

    python tools/train_tiny_clip.py --out demo_out/tiny_clip.safetensors [--seed 0]
        [--classes aeroplane,bird,...] [--scenes 240] [--steps 300]

The model has the open_clip (OpenAI) architecture with the real CLIP BPE
tokenizer that open_clip ships: a ViT of width 64 and 2 blocks on 64x64
images (8x8 patches), a text transformer of width 64 and 2 blocks, embedding
64, plus OVSeg's mask-prompt embeddings (docs/method.md#mask-adapted-clip).
It is trained contrastively on scenes drawn by ``tools/make_demo_voc.py``,
through the same mask-prompt forward the QA-CLIMS objective uses
(:class:`net.clip_models.MaskCLIP`), on the kinds of views that objective
shows it (docs/method.md#losses): the ImageNet-normalised image multiplied by
a soft mask, with the binarised mask as prompt. Views cover an object (whole
or cut in part), an object spilling onto its co-occurring region, the
complement of an object, and plain object crops. Each view's target is
spread over the texts of what it shows, in proportion to the area each thing
covers: an object's class prompt and its FG answers, a region's name, the
plain background's answers (the texts of ``tools/make_demo_vqa.py``, with
the prompt of :data:`vqa.text_features.PROMPT`); in a crop the object it is of
counts CROP_FOCUS times its area. The logit scale is fixed at
50 and gradients are clipped to norm 1.

Zero-shot accuracy (argmax over the class prompts of ``--classes``) is
measured on object crops and on masked object views of held-out scenes. A crop
(the object's box with a 5-30% margin) counts when its object covers more of it
than any other object; where another object covers at least as much, the
crop's label is ambiguous: those crops are counted apart, and the accuracy over
all crops is reported too. The weights are saved as safetensors in OpenAI's key
layout with ``visual.mask_embedding``: :func:`net.clip_models.load_clip` reads
them.
"""
import argparse
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
from safetensors.torch import save
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from misc.imutils import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from misc.io import atomic_write  # noqa: E402
from net.clip_models import MASK_EMBEDDING, MaskCLIP, tokenize  # noqa: E402
from tools.make_demo_voc import VOC_CLASSES, draw_scene  # noqa: E402
from tools.make_demo_vqa import bg_answers, fg_answers  # noqa: E402
from vqa.text_features import PROMPT, fg_prompted_answers  # noqa: E402

IMAGE_SIZE = 64
PATCH = 8
WIDTH = 64
MASK_PROMPT_DEPTH = 3
LOGIT_SCALE = 50.0
GRAD_CLIP = 1.0
FRAME = 128                 # the demo's CAM crop: views are cut from a frame of this size
LONG_SIDE = (96, 160)       # the demo's --cam_resize_long range
CROPS_PER_OBJECT = 3
CROP_FOCUS = 6.0
HELD_OUT_CROPS = 'largest object'   # which held-out crops crop_accuracy counts (held_out_accuracies)


def tiny_clip_settings():
    """The trainer's fixed settings: a model saved under other ones is not this trainer's."""
    return {'image_size': IMAGE_SIZE, 'patch': PATCH, 'width': WIDTH,
            'mask_prompt_depth': MASK_PROMPT_DEPTH, 'logit_scale': LOGIT_SCALE,
            'grad_clip': GRAD_CLIP, 'frame': FRAME, 'long_side': list(LONG_SIDE),
            'crops_per_object': CROPS_PER_OBJECT, 'crop_focus': CROP_FOCUS,
            'held_out_crops': HELD_OUT_CROPS}


def tiny_clip(seed):
    """A fresh open_clip CLIP (quick GELU, OpenAI layout) and its mask-prompt embeddings."""
    torch.manual_seed(seed)
    model = CLIP(WIDTH, CLIPVisionCfg(layers=2, width=WIDTH, patch_size=PATCH,
                                      image_size=IMAGE_SIZE),
                 CLIPTextCfg(context_length=77, vocab_size=49408, width=WIDTH, heads=1, layers=2),
                 quick_gelu=True)
    mask_embedding = 0.02 * torch.randn(MASK_PROMPT_DEPTH, (IMAGE_SIZE // PATCH) ** 2, WIDTH)
    return model, mask_embedding


# ----------------------------------------------------------------------------
# Scenes and their texts
# ----------------------------------------------------------------------------

def object_texts(obj):
    """Texts of an object: its class name and its FG answers with the class name (as the
    QA-CLIMS text features use them, docs/method.md#text-features)."""
    name = VOC_CLASSES[obj['cls']]
    return [name] + fg_prompted_answers(name, fg_answers(obj), {})


def background_texts(scene):
    """Texts of the plain background: the BG answers that name no region and no object."""
    named = set(scene['regions']) | {VOC_CLASSES[o['cls']] for o in scene['objects']}
    return [a for a in bg_answers(scene, scene['objects'][0]) if a not in named]


def scene_components(rgb, label, regions, scene):
    """(masks [K, H, W] float, texts per component): each object, each region, the plain
    background."""
    masks, texts = [], []
    for obj in scene['objects']:
        masks.append(label == obj['cls'] + 1)
        texts.append(object_texts(obj))
    for kind in scene['regions']:
        masks.append(regions[kind])
        texts.append([kind])
    masks.append(~np.any(masks, axis=0))
    texts.append(background_texts(scene))
    return torch.from_numpy(np.stack(masks).astype(np.float32)), texts


def normalised(rgb):
    """ImageNet-normalised image [3, H, W] (what the CAM network and the QA-CLIMS views see)."""
    x = torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1)
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    return (x - mean[:, None, None]) / std[:, None, None]


def framed(rng, stack):
    """The demo's training crop of a stack [C, H, W]: long side rescaled into LONG_SIDE, a
    random FRAME x FRAME window (zero padded), then resized to the CLIP input."""
    h, w = stack.shape[1:]
    scale = rng.uniform(*LONG_SIDE) / max(h, w)
    h2, w2 = max(1, round(h * scale)), max(1, round(w * scale))
    resized = F.interpolate(stack[None], (h2, w2), mode='bilinear', align_corners=False)[0]
    canvas = stack.new_zeros(stack.shape[0], FRAME, FRAME)
    (cy, sy), (cx, sx) = (window(rng, n) for n in (h2, w2))
    canvas[:, cy, cx] = resized[:, sy, sx]
    return F.interpolate(canvas[None], (IMAGE_SIZE, IMAGE_SIZE), mode='bilinear',
                         align_corners=True)[0]


def window(rng, n):
    """(canvas slice, source slice) of a random placement of n pixels in FRAME."""
    offset = int(rng.integers(0, abs(FRAME - n) + 1))
    if n <= FRAME:
        return slice(offset, offset + n), slice(0, n)
    return slice(0, FRAME), slice(offset, offset + FRAME)


def object_crop(rng, stack, mask):
    """A box crop around ``mask`` (margin 5-30%) of a stack [C, H, W], resized to the CLIP input."""
    ys, xs = torch.nonzero(mask > 0.5, as_tuple=True)
    y0, y1, x0, x1 = ys.min().item(), ys.max().item() + 1, xs.min().item(), xs.max().item() + 1
    my, mx = [int(rng.uniform(0.05, 0.3) * (b - a)) for a, b in ((y0, y1), (x0, x1))]
    h, w = stack.shape[1:]
    crop = stack[:, max(0, y0 - my):min(h, y1 + my), max(0, x0 - mx):min(w, x1 + mx)]
    return F.interpolate(crop[None], (IMAGE_SIZE, IMAGE_SIZE), mode='bilinear',
                         align_corners=True)[0]


def is_drawn(mask):
    """Whether a component mask [S, S] holds a pixel (a region can lie outside the frame)."""
    return bool((mask > 0.5).any())


def half_plane(rng, mask):
    """A random half plane [S, S] through a point of ``mask`` (:func:`is_drawn`): cuts an
    object in part."""
    ys, xs = torch.nonzero(mask > 0.5, as_tuple=True)
    k = int(rng.integers(len(ys)))
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = torch.meshgrid(torch.arange(mask.shape[0]), torch.arange(mask.shape[1]),
                            indexing='ij')
    return ((xx - xs[k]) * math.cos(angle) + (yy - ys[k]) * math.sin(angle) >= 0).float()


def soften(rng, mask):
    """CAM-like softening of a view mask: a random box blur (or none)."""
    k = int(rng.choice([1, 3, 5]))
    if k == 1:
        return mask
    return F.avg_pool2d(mask[None, None], k, 1, k // 2, count_include_pad=False)[0, 0]


def object_views(rng, comps, k, home):
    """View masks [S, S] of object ``k`` (comps[k]): whole, cut, spilling onto its home
    region ``home`` (a component index or None; no spill when the frame leaves it out), its
    complement and its cut's complement."""
    obj = comps[k]
    cut = obj * half_plane(rng, obj)
    views = [obj, cut, 1 - obj, 1 - cut]
    if home is not None and is_drawn(comps[home]):
        views.append(torch.clamp(obj + comps[home] * half_plane(rng, comps[home]), 0, 1))
    return [soften(rng, v) for v in views if v.sum() >= 4]


def view_target(mask, comps, comp_texts, vocab, focus=None):
    """Target distribution over ``vocab`` of a view: each component's share of the view's
    mass (the ``focus`` component's counted CROP_FOCUS times: the object a crop is of),
    spread evenly over its texts."""
    target = torch.zeros(len(vocab))
    share = (comps * mask).flatten(1).sum(1)
    if focus is not None:
        share[focus] *= CROP_FOCUS
    for weight, texts in zip(share / share.sum().clamp_min(1e-6), comp_texts):
        rows = [vocab[t] for t in dict.fromkeys(texts)]
        target[rows] += weight / len(rows)
    return target


def is_largest_object(crop_comps, k, n_objects):
    """Whether object ``k`` covers more of a crop than any other object does (crop_comps:
    the crop's component masks [K, S, S], objects first): otherwise the crop's label is
    ambiguous, since the crop shows another object at least as much as the one it is cut for."""
    areas = crop_comps[:n_objects].flatten(1).sum(1)
    others = torch.cat([areas[:k], areas[k + 1:]])
    return bool(others.numel() == 0 or areas[k] > others.max())


def scene_views(rng, class_ids, vocab):
    """(images [V, 3, S, S], prompts [V, 1, S, S], targets [V, T], crop class ids, crops
    [C, 3, S, S], whether each crop's largest object is its own (:func:`is_largest_object`),
    masked object views [C, 3, S, S], their prompts) of one new scene; new texts are added
    to ``vocab``."""
    rgb, label, regions, scene = draw_scene(rng, class_ids)
    comps, comp_texts = scene_components(rgb, label, regions, scene)
    for texts in comp_texts:
        for t in texts:
            vocab.setdefault(t, len(vocab))
    stack = framed(rng, torch.cat([normalised(rgb), comps]))
    image, frame_comps = stack[:3], stack[3:]
    images, prompts, targets = [], [], []
    crops, crop_is_own, objects, object_prompts, crop_classes = [], [], [], [], []
    kinds = scene['regions']
    for k, obj in enumerate(scene['objects']):
        if frame_comps[k].sum() < 4 or not is_drawn(frame_comps[k]):
            continue
        home = len(scene['objects']) + kinds.index(obj['home']) if obj['home'] else None
        for m in object_views(rng, frame_comps, k, home):
            images.append(image * m)
            prompts.append((m >= 0.1 * m.max()).float()[None])
            targets.append(view_target(m, frame_comps, comp_texts, vocab))
        crop_mask = torch.ones(1, IMAGE_SIZE, IMAGE_SIZE)
        for _ in range(CROPS_PER_OBJECT):
            crop = object_crop(rng, torch.cat([normalised(rgb), comps]), comps[k])
            images.append(crop[:3])
            prompts.append(crop_mask)
            targets.append(view_target(crop_mask[0], crop[3:], comp_texts, vocab, focus=k))
        crops.append(crop[:3])
        crop_is_own.append(is_largest_object(crop[3:], k, len(scene['objects'])))
        objects.append(image * frame_comps[k])
        object_prompts.append((frame_comps[k] > 0).float()[None])
        crop_classes.append(obj['cls'])
    return images, prompts, targets, crop_classes, crops, crop_is_own, objects, object_prompts


def view_set(seed, class_ids, n_scenes, vocab):
    """Views of ``n_scenes`` scenes drawn with ``seed`` (see :func:`scene_views`), stacked."""
    rng = np.random.default_rng(seed)
    parts = [[] for _ in range(8)]
    for _ in range(n_scenes):
        for part, items in zip(parts, scene_views(rng, class_ids, vocab)):
            part.extend(items)
    images, prompts, targets, classes, crops, crop_is_own, objects, object_prompts = parts
    width = len(vocab)
    targets = torch.stack([F.pad(t, (0, width - len(t))) for t in targets])
    return {'images': torch.stack(images), 'prompts': torch.stack(prompts), 'targets': targets,
            'classes': torch.tensor(classes), 'crops': torch.stack(crops),
            'crop_is_own': torch.tensor(crop_is_own),
            'objects': torch.stack(objects), 'object_prompts': torch.stack(object_prompts)}


# ----------------------------------------------------------------------------
# Training and evaluation
# ----------------------------------------------------------------------------

def normalise(x):
    return x / x.norm(dim=-1, keepdim=True)


def text_features(model, texts):
    """Normalised text features of ``PROMPT.format(t)`` for each text."""
    return normalise(model.encode_text(tokenize([PROMPT.format(t) for t in texts])).float())


def soft_contrastive_loss(model, images, prompts, targets, text_feats):
    """Cross-entropy of the views' text distributions at the fixed logit scale."""
    logits = LOGIT_SCALE * normalise(model.encode_image(images, prompts).float()) @ text_feats.T
    return -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()


def zero_shot_hits(model, images, prompts, classes, class_ids):
    """Whether each view's most similar class prompt (among ``class_ids``) is its class [V]."""
    with torch.no_grad():
        feats = text_features(model, [VOC_CLASSES[c] for c in class_ids])
        sims = normalise(model.encode_image(images, prompts).float()) @ feats.T
    return torch.tensor(class_ids)[sims.argmax(1)] == classes


def held_out_accuracies(model, held_out, class_ids):
    """Zero-shot accuracies on a held-out :func:`view_set`: ``crop_accuracy`` on the object
    crops whose largest object is the one they are cut for (the target's figure),
    ``crop_accuracy_all`` on every crop, counting as misses the ``ambiguous_crops`` where
    another object covers at least as much of the crop, and ``masked_accuracy`` on the
    masked object views (what the QA-CLIMS objective shows the CLIP)."""
    crops, classes, own = held_out['crops'], held_out['classes'], held_out['crop_is_own']
    ones = torch.ones(len(crops), 1, IMAGE_SIZE, IMAGE_SIZE)
    crop_hits = zero_shot_hits(model, crops, ones, classes, class_ids).float()
    masked_hits = zero_shot_hits(model, held_out['objects'], held_out['object_prompts'],
                                 classes, class_ids).float()
    return {'crop_accuracy': float(crop_hits[own].mean()),
            'crop_accuracy_all': float(crop_hits.mean()),
            'ambiguous_crops': int((~own).sum()),
            'masked_accuracy': float(masked_hits.mean())}


def train(model, views, vocab_texts, steps, batch_size, lr, seed):
    """AdamW with warm-up and cosine decay, gradient norm clipped to GRAD_CLIP."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.SequentialLR(optimizer, [
        torch.optim.lr_scheduler.LinearLR(optimizer, 0.1, 1.0, warmup),
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps - warmup)], [warmup])
    generator = torch.Generator().manual_seed(seed)
    n = len(views['images'])
    bar = tqdm(range(steps), desc='train_tiny_clip', dynamic_ncols=True)
    for _ in bar:
        idx = torch.randint(n, (batch_size,), generator=generator)
        loss = soft_contrastive_loss(model, views['images'][idx], views['prompts'][idx],
                                     views['targets'][idx], text_features(model, vocab_texts))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
        optimizer.step()
        schedule.step()
        bar.set_postfix(loss='%.3f' % loss.item())
    return loss.item()


def trainable_mask_clip(seed):
    """A MaskCLIP around a fresh tiny CLIP with every weight trainable but the logit scale."""
    clip, mask_embedding = tiny_clip(seed)
    model = MaskCLIP(clip, mask_embedding)
    model.requires_grad_(True)
    clip.logit_scale.data.fill_(math.log(LOGIT_SCALE))
    clip.logit_scale.requires_grad_(False)
    return model


def state_dict_of(model):
    """OpenAI-layout state dict with ``visual.mask_embedding``."""
    state = {k: v.detach().contiguous() for k, v in model.clip.state_dict().items()}
    state[MASK_EMBEDDING] = model.mask_embedding.detach().contiguous()
    return state


def train_tiny_clip(out, class_ids, seed=0, scenes=240, steps=300, batch_size=128, lr=2e-3,
                    held_out_scenes=60):
    """Train (``steps`` 0: leave untrained, the random-CLIP ablation), evaluate on held-out
    scenes and save the tiny CLIP; returns a dict with the path, the zero-shot accuracies
    (crops, masked object views), the final loss and the time."""
    start = time.time()
    torch.manual_seed(seed)
    model = trainable_mask_clip(seed)
    result = {'steps': steps}
    if steps:
        vocab = {}
        views = view_set(seed, class_ids, scenes, vocab)
        result.update(loss=train(model, views, list(vocab), steps, batch_size, lr, seed),
                      texts=len(vocab))
    held_out = view_set(10_000 + seed, class_ids, held_out_scenes, {})
    result.update(held_out_accuracies(model, held_out, class_ids),
                  held_out_objects=len(held_out['classes']), chance=1.0 / len(class_ids))
    data = save(state_dict_of(model))
    with atomic_write(out) as f:
        f.write(data)
    result.update(path=out, seconds=time.time() - start)
    return result


def accuracy_summary(r):
    """One line on the zero-shot accuracies of a :func:`train_tiny_clip` result."""
    return ('%.1f%% of %d held-out object crops (%.1f%% counting the %d crops another object '
            'covers at least as much), %.1f%% of masked object views (chance %.1f%%)'
            % (100 * r['crop_accuracy'], r['held_out_objects'] - r['ambiguous_crops'],
               100 * r['crop_accuracy_all'], r['ambiguous_crops'], 100 * r['masked_accuracy'],
               100 * r['chance']))


def class_ids_of(names):
    """0-based VOC class ids of comma-separated class names (all 20 when empty)."""
    if not names:
        return list(range(len(VOC_CLASSES)))
    unknown = [n for n in names.split(',') if n not in VOC_CLASSES]
    if unknown:
        raise ValueError('unknown class names %s (VOC classes: %s)'
                         % (unknown, ', '.join(VOC_CLASSES)))
    return sorted(VOC_CLASSES.index(n) for n in names.split(','))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', required=True)
    p.add_argument('--classes', default='', help='comma-separated VOC class names (default all)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--scenes', type=int, default=240)
    p.add_argument('--steps', type=int, default=300)
    p.add_argument('--batch_size', type=int, default=128)
    p.add_argument('--lr', type=float, default=2e-3)
    a = p.parse_args(argv)
    r = train_tiny_clip(a.out, class_ids_of(a.classes), a.seed, a.scenes, a.steps, a.batch_size,
                        a.lr)
    print('tiny CLIP -> %s (%.0f s, %d steps)\nzero-shot accuracy: %s'
          % (r['path'], r['seconds'], r['steps'], accuracy_summary(r)))


if __name__ == '__main__':
    main()
