"""VQA step: batched BLIP answers vs one question at a time (same tiny model, same settings).

    python bench/bench_vqa_batching.py [--images 8] [--batch 4] [--image_size 96]

A tiny random BLIP VQA model (``tools/make_tiny_blip.py``) answers the 16
questions of every class of synthetic images, first the way the step does it
(one image encoding per image, one generate call per question length for a
batch of images), then one question per call as the reference script does.
Prints both times, the speed ratio and whether the answers are identical.
"""
import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from step.vqa import class_questions  # noqa: E402
from tools.make_demo_voc import generate_demo_voc  # noqa: E402
from tools.make_tiny_blip import write_tiny_blip  # noqa: E402
from voc12.devkit import VOC12  # noqa: E402
from vqa.blip import BlipVQA  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--images', type=int, default=8)
    p.add_argument('--batch', type=int, default=4, help='images per batched call')
    p.add_argument('--image_size', type=int, default=96)
    p.add_argument('--threads', type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        voc = generate_demo_voc(os.path.join(tmp, 'voc'), n_images=a.images, seed=1,
                                min_side=64, max_side=96)
        model = BlipVQA(write_tiny_blip(os.path.join(tmp, 'blip')), image_size=a.image_size)
        source = VOC12(voc['root'])
        ids = voc['ids']
        images = [source.read_image(i) for i in ids]
        questions = [[q for c in source.image_label_ids(i)
                      for q in class_questions(source.class_names[c], source.class_names)]
                     for i in ids]
        start = time.perf_counter()
        batched = []
        for k in range(0, len(ids), a.batch):
            batched += model.answer(images[k:k + a.batch], questions[k:k + a.batch])
        t_batched = time.perf_counter() - start
        start = time.perf_counter()
        single = [[model.answer([img], [[q]])[0][0] for q in qs]
                  for img, qs in zip(images, questions)]
        t_single = time.perf_counter() - start
    n_questions = sum(len(q) for q in questions)
    print('%d images, %d questions, tiny BLIP at %dx%d, %d threads'
          % (len(ids), n_questions, a.image_size, a.image_size, a.threads))
    print('batched (%d images per call): %.2f s' % (a.batch, t_batched))
    print('one question at a time:      %.2f s' % t_single)
    print('speed-up: %.1fx; identical answers: %s' % (t_single / t_batched, batched == single))


if __name__ == '__main__':
    main()
