"""Short pretraining of a ResNet-50 on the demo's synthetic world, standing in for
ImageNet (which cannot be downloaded here) in the demo (README: the demo).

    python tools/pretrain_backbone.py --out demo_out/pretrained_res50.pth [--seed 0] [--amp True]

A torchvision ResNet-50 learns to name single things cut from scenes drawn by
``tools/make_demo_voc.py``: box crops of objects of all 20 classes and of
background regions (30 labels), at 64x64, ImageNet-normalised, randomly
flipped, in channels-last memory layout (faster convolutions on CPU), under bf16
autocast with ``--amp True`` (1.5x per step on a CPU with bf16 kernels); Adam
with a one-cycle schedule, the last BatchNorm of each residual
block starting at zero (torchvision's ``zero_init_residual``: a deep network
from scratch learns much faster so). The backbone (``fc``
dropped) is saved with ``torch.save`` in torchvision's key layout, the file
``--imagenet_weights`` (train_cam, train_irn) and, for ``--seg_arch
deeplabv2_resnet50``, ``--seg_backbone_weights`` read. The scenes are drawn
with seeds of their own, never those of the demo's dataset.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from misc.io import atomic_write  # noqa: E402
from pipeline.engine import autocast_context  # noqa: E402
from tools.make_demo_voc import REGION_KINDS, VOC_CLASSES, draw_scene  # noqa: E402
from tools.train_tiny_clip import normalised, object_crop  # noqa: E402

SCENE_SEED_OFFSET = 20_000     # pretraining scenes never repeat the demo's dataset seeds
N_LABELS = len(VOC_CLASSES) + len(REGION_KINDS)


def labelled_crops(seed, n_scenes):
    """(crops [N, 3, 64, 64], labels [N]): every object (its class) and every region
    (20 + its kind) of ``n_scenes`` scenes of all classes."""
    rng = np.random.default_rng(SCENE_SEED_OFFSET + seed)
    crops, labels = [], []
    for _ in range(n_scenes):
        rgb, label, regions, scene = draw_scene(rng, list(range(len(VOC_CLASSES))))
        image = normalised(rgb)
        things = [(torch.from_numpy(label == o['cls'] + 1), o['cls']) for o in scene['objects']]
        things += [(torch.from_numpy(regions[k]), len(VOC_CLASSES) + REGION_KINDS.index(k))
                   for k in scene['regions']]
        for mask, target in things:
            if mask.sum() >= 16:
                crops.append(object_crop(rng, image, mask.float()))
                labels.append(target)
    return torch.stack(crops), torch.tensor(labels)


def pretrain(crops, labels, steps, batch_size, lr, seed, amp=False):
    """Train a torchvision ResNet-50 on the crops (its forward under bf16 autocast with
    ``amp``); returns it and the last batch accuracy."""
    torch.manual_seed(seed)
    model = torchvision.models.resnet50(weights=None, num_classes=N_LABELS,
                                        zero_init_residual=True)
    model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps,
                                                   pct_start=0.15)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    accuracy = 0.0
    bar = tqdm(range(steps), desc='pretrain_backbone', dynamic_ncols=True)
    for _ in bar:
        idx = torch.randint(len(crops), (batch_size,), generator=generator)
        x = crops[idx]
        flip = torch.rand(batch_size, generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
        x = x.contiguous(memory_format=torch.channels_last)
        with autocast_context(torch.device('cpu'), amp):
            logits = model(x).float()
        loss = F.cross_entropy(logits, labels[idx])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        schedule.step()
        accuracy = float((logits.argmax(1) == labels[idx]).float().mean())
        bar.set_postfix(loss='%.3f' % loss.item(), acc='%.2f' % accuracy)
    return model, accuracy


def held_out_accuracy(model, crops, labels):
    """Accuracy of the pretrained network on crops of other scenes."""
    model.eval()
    with torch.no_grad():
        return float((model(crops).argmax(1) == labels).float().mean())


def pretrain_backbone(out, seed=0, scenes=200, steps=150, amp=False, batch_size=32, lr=1e-3):
    """Pretrain and save the backbone (``amp``: bf16 autocast); returns a dict: path,
    held-out accuracy, seconds."""
    start = time.time()
    crops, labels = labelled_crops(seed, scenes)
    model, _ = pretrain(crops, labels, steps, batch_size, lr, seed, amp)
    test_crops, test_labels = labelled_crops(seed + 1000, max(10, scenes // 5))
    accuracy = held_out_accuracy(model, test_crops, test_labels)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith('fc.')}
    with atomic_write(out) as f:
        torch.save(state, f)
    return {'path': out, 'accuracy': accuracy, 'crops': len(labels),
            'seconds': time.time() - start}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', required=True)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--scenes', type=int, default=200)
    p.add_argument('--steps', type=int, default=150)
    p.add_argument('--batch_size', type=int, default=32)
    p.add_argument('--lr', type=float, default=1e-3)
    p.add_argument('--amp', default='False', choices=('True', 'False'),
                   help='bf16 autocast (faster on CPUs with bf16 kernels, AVX512-BF16 or AMX)')
    a = p.parse_args(argv)
    r = pretrain_backbone(a.out, a.seed, a.scenes, a.steps, a.amp == 'True', a.batch_size, a.lr)
    print('pretrained ResNet-50 -> %s (%d crops, %.0f s); held-out accuracy %.1f%% over %d labels'
          % (r['path'], r['crops'], r['seconds'], 100 * r['accuracy'], N_LABELS))


if __name__ == '__main__':
    main()
