"""QA-CLIMS training step: our batched objective vs a per-instance loop of the same math.

    python bench/bench_qa_clims_step.py [--batch 8] [--size 128] [--repeats 5]

Same tiny models for both (the CLIMS ResNet-50 and a tiny random CLIP with
mask embeddings, 64x64 input), same batch and text features. The loop
version handles one (image, class) instance at a time, as the reference
does (resize, FAT, two CLIP encodings of batch 1, the two InfoNCE terms).
The batched step is the stage's own ``step.train_qa_clims.forward_terms``
(network forward + objective) and its backward. The measurements run
interleaved, one of each per round, so that the load of a shared machine
hits them alike; printed are the medians of the wall and process-CPU times,
the medians of the per-round ratios, and the loss difference. A fifth
measurement, the network's forward and backward alone (the mean of its maps
as the loss), bounds what any objective can gain (Amdahl): loop step /
network alone.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data.registry import DATASETS  # noqa: E402
from net.clip_models import load_clip  # noqa: E402
from net.losses import foreground_adaptive_threshold, info_nce_bg, info_nce_fg  # noqa: E402
from net.resnet50_clims import CLIMS  # noqa: E402
from net.rtc_objective import ObjectiveConfig, qa_clims_losses  # noqa: E402
from step.train_qa_clims import forward_terms  # noqa: E402
from tools.make_tiny_clip import write_tiny_clip  # noqa: E402
from vqa.text_bank import TextBank  # noqa: E402


def random_bank(names, label, dim, gen, l_max=10):
    """A text bank with random unit features for every positive (image, class)."""
    pairs = [(names[n], int(c)) for n, c in zip(*torch.nonzero(label, as_tuple=True))]
    table = F.normalize(torch.randn(64, dim, generator=gen), dim=-1)
    index = torch.randint(0, 64, (len(pairs), l_max), generator=gen)
    lengths = torch.randint(1, l_max + 1, (len(pairs),), generator=gen)
    valid = torch.arange(l_max)[None] < lengths[:, None]
    fg = torch.randn(len(pairs), dim, generator=gen) * 0.1
    return TextBank({p: i for i, p in enumerate(pairs)}, fg, table, index, valid)


def looped_losses(x, img, label, names, clip, bank, cfg):
    """The same objective, one instance at a time."""
    size = cfg.clip_input_size
    l_frc = l_brc = x.new_zeros(())
    for n, c in zip(*torch.nonzero(label, as_tuple=True)):
        rows = bank.rows([names[int(n)]], [int(c)])
        t_fg, t_bg, valid, has_bg = bank.features(rows)
        if not bool(has_bg[0]):
            continue
        cam = F.interpolate(x[n, c][None, None], (size, size), mode='bilinear',
                            align_corners=True)
        img_s = F.interpolate(img[n][None], (size, size), mode='bilinear', align_corners=True)
        mask = foreground_adaptive_threshold(cam, cfg.fat_alpha)
        v = clip.encode_image(cam * img_s, mask)
        u = clip.encode_image((1 - cam) * img_s, 1 - mask)
        l_frc = l_frc + info_nce_fg(v, t_fg, t_bg, valid, cfg.nce_t)[0]
        l_brc = l_brc + info_nce_bg(u, t_fg, t_bg, valid, cfg.nce_t)[0]
    return cfg.hyper[0] * l_frc + cfg.hyper[1] * l_brc + cfg.hyper[2] * x.mean()


def timed(fn):
    """(wall seconds, process CPU seconds, result) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def interleaved(fns, repeats):
    """Each function once per round, ``repeats`` rounds after a warm-up round:
    {name: {'wall': [s], 'cpu': [s], 'out': last result}}."""
    for fn in fns.values():
        fn()
    runs = {name: {'wall': [], 'cpu': []} for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            wall, cpu, runs[name]['out'] = timed(fn)
            runs[name]['wall'].append(wall)
            runs[name]['cpu'].append(cpu)
    return runs


def paired_ratio(slow, fast):
    """Median over rounds of slow / fast (each round measured side by side)."""
    return statistics.median(s / f for s, f in zip(slow, fast))


def row(name, batched, looped):
    cells = []
    for clock in ('wall', 'cpu'):
        cells += [statistics.median(batched[clock]), statistics.median(looped[clock]),
                  paired_ratio(looped[clock], batched[clock])]
    return '| %s | %.4f | %.4f | %.2fx | %.4f | %.4f | %.2fx |' % tuple([name] + cells)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--size', type=int, default=128)
    p.add_argument('--labels_per_image', type=int, default=3)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--threads', type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    gen = torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        clip = load_clip(write_tiny_clip(os.path.join(tmp, 'clip.safetensors')))
    n_classes = DATASETS['voc12'].n_classes
    model = CLIMS(n_classes).train()
    img = torch.randn(a.batch, 3, a.size, a.size, generator=gen)
    label = torch.zeros(a.batch, n_classes)
    for n in range(a.batch):
        label[n, torch.randperm(n_classes, generator=gen)[:a.labels_per_image]] = 1
    names = ['img%d' % n for n in range(a.batch)]
    pack = {'img': img, 'label': label, 'name': names}
    bank = random_bank(names, label, 32, gen)
    cfg = ObjectiveConfig(clip_input_size=clip.input_resolution)
    cpu = torch.device('cpu')
    with torch.no_grad():
        x = model(img)

    def batched_step():
        model.zero_grad()
        _, terms = forward_terms(model, pack, clip, bank, cfg, cpu, amp=False)
        terms['loss'].backward()
        return terms['loss'].item()

    def network_step():
        model.zero_grad()
        loss = model(img).mean()
        loss.backward()
        return loss.item()

    def looped_step():
        model.zero_grad()
        loss = looped_losses(model(img), img, label, names, clip, bank, cfg)
        loss.backward()
        return loss.item()

    load_before = os.getloadavg()[0]
    runs = interleaved({
        'objective batched': lambda: qa_clims_losses(x, img, label, names, clip, bank,
                                                     cfg)['loss'],
        'objective loop': lambda: looped_losses(x, img, label, names, clip, bank, cfg),
        'step batched': batched_step, 'step loop': looped_step,
        'network alone': network_step}, a.repeats)
    batched, looped = runs['step batched']['out'], runs['step loop']['out']
    print('batch %d of %dx%d, %d instances, tiny CLIP %dx%d, %d threads, medians of %d '
          'interleaved rounds; load average %.1f before, %.1f after'
          % (a.batch, a.size, a.size, int(label.sum()), cfg.clip_input_size,
             cfg.clip_input_size, a.threads, a.repeats, load_before, os.getloadavg()[0]))
    print('| | batched (s) | per-instance loop (s) | ratio | batched CPU (s) | loop CPU (s) '
          '| CPU ratio |')
    print('|---|---|---|---|---|---|---|')
    print(row('objective (forward)', runs['objective batched'], runs['objective loop']))
    print(row('whole step (fwd + bwd)', runs['step batched'], runs['step loop']))
    print('QA-CLIMS step vs per-instance loop: %.2fx (target >= 1.3x), loss batched %.6f, '
          'loop %.6f, abs diff %.2e'
          % (paired_ratio(runs['step loop']['wall'], runs['step batched']['wall']), batched, looped,
             abs(batched - looped)))
    network = statistics.median(runs['network alone']['wall'])
    print('Amdahl bound: the network alone (forward + backward of its maps, no objective) '
          'takes %.4f s, %.0f%% of the batched step; an objective of zero cost would give '
          'loop step / network = %.2fx (CPU time %.2fx)'
          % (network, 100 * network / statistics.median(runs['step batched']['wall']),
             paired_ratio(runs['step loop']['wall'], runs['network alone']['wall']),
             paired_ratio(runs['step loop']['cpu'], runs['network alone']['cpu'])))


if __name__ == '__main__':
    main()
