"""Random walk of IRNet: our sparse propagation vs the reference's dense matrix.

    python bench/bench_random_walk.py [--threads 2] [--repeat 3] [--dense_limit 11750]

For grids 32x32, 63x94 and 94x125 with 3 classes (radius 5, beta 10,
exp_times 8) it times ``wsss.random_walk.propagate_to_edge`` and the
reference formulation (dense HW x HW float32 affinity, transition matrix
squared 8 times, then cams @ T), which is implemented here only, side by
side in one run, and ends with the ratio line of the 94x125 grid.

Each measurement runs in a fresh subprocess: peak memory = growth of the
process's high-water RSS (``ru_maxrss``) from just before the call to its
end, time = wall time of the call. Ours is measured ``--repeat`` times per
grid (the median is shown), the dense version once (94x125 takes minutes
and 1.6 GB). By default the dense version runs on every grid; above
``--dense_limit`` pixels it is skipped and extrapolated from the largest
measured grid as t * (n / n0)^3 (8 dense n x n products dominate) and
m * (n / n0)^2; such cells are marked with '*'.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wsss.random_walk import padded_path_affinity, propagate_to_edge  # noqa: E402

GRIDS = ((32, 32), (63, 94), (94, 125))
TARGET_TIME, TARGET_MEMORY = 1000, 30       # issue 14, at the largest grid


def dense_reference(cams, edge, beta=10, exp_times=8, radius=5):
    """The reference: dense affinity on the padded grid, cropped, T squared exp_times times."""
    height, width = edge.shape[-2:]
    path_index, (ph, pw), aff = padded_path_affinity(edge, radius)
    n = ph * pw
    src = torch.from_numpy(path_index.src_indices).repeat(aff.shape[0])
    dst = torch.from_numpy(path_index.dst_indices).reshape(-1)
    diag = torch.arange(n)
    indices = torch.stack([torch.cat([src, diag, dst]), torch.cat([dst, diag, src])])
    values = torch.cat([aff.reshape(-1), torch.ones(n), aff.reshape(-1)])
    dense = torch.sparse_coo_tensor(indices, values, (n, n), check_invariants=False).to_dense()
    dense = dense.view(ph, pw, ph, pw)[:-radius, radius:-radius, :-radius, radius:-radius]
    dense = dense.reshape(height * width, height * width)
    trans = dense ** beta
    trans = trans / trans.sum(dim=0, keepdim=True)
    for _ in range(exp_times):
        trans = trans @ trans
    x = (cams * (1 - edge)).reshape(cams.shape[0], -1)
    return (x @ trans).view(cams.shape[0], 1, height, width)


def inputs(h, w):
    gen = torch.Generator().manual_seed(h * 1000 + w)
    cams = torch.rand(3, h, w, generator=gen)
    edge = F.avg_pool2d(torch.rand(1, 1, h, w, generator=gen), 3, 1, 1)[0]
    return cams, edge


def worker(kind, h, w, threads):
    """One measurement in this process; prints JSON."""
    torch.set_num_threads(threads)
    cams, edge = inputs(h, w)
    fn = dense_reference if kind == 'dense' else propagate_to_edge
    fn(*inputs(8, 8))                       # warm-up of the code path, tiny
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    out = fn(cams, edge)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    torch.save(out, os.path.join(os.environ['BENCH_TMP'], '%s_%d_%d.pt' % (kind, h, w)))
    print(json.dumps({'seconds': seconds, 'peak_mb': max(peak, 0) / 1024}))


def measure(kind, h, w, threads, tmp):
    out = subprocess.run([sys.executable, __file__, '--worker', kind, str(h), str(w),
                          '--threads', str(threads)], capture_output=True, text=True,
                         env=dict(os.environ, BENCH_TMP=tmp), check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_ours(h, w, threads, tmp, repeat):
    """Median time and median peak of ``repeat`` fresh runs of propagate_to_edge."""
    runs = [measure('sparse', h, w, threads, tmp) for _ in range(repeat)]
    return {key: statistics.median(r[key] for r in runs) for key in ('seconds', 'peak_mb')}


def max_relative_difference(tmp, h, w):
    ref = torch.load(os.path.join(tmp, 'dense_%d_%d.pt' % (h, w)), weights_only=True)
    got = torch.load(os.path.join(tmp, 'sparse_%d_%d.pt' % (h, w)), weights_only=True)
    return float((ref - got).abs().max() / ref.abs().max())


def main():
    import tempfile
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--repeat', type=int, default=3,
                   help='fresh runs of ours per grid (the median is reported)')
    p.add_argument('--dense_limit', type=int, default=GRIDS[-1][0] * GRIDS[-1][1],
                   help='largest number of pixels for which the dense version is run '
                        '(default: every grid)')
    p.add_argument('--worker', nargs=3, metavar=('KIND', 'H', 'W'), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        return worker(a.worker[0], int(a.worker[1]), int(a.worker[2]), a.threads)
    if a.repeat < 1 or a.threads < 1:
        p.error('--repeat and --threads must be >= 1')
    if a.dense_limit < GRIDS[0][0] * GRIDS[0][1]:
        p.error('--dense_limit must cover the smallest grid (%d pixels): the others are '
                'extrapolated from a measured one' % (GRIDS[0][0] * GRIDS[0][1]))
    print('| grid | pixels | ours time (s) | ours peak (MB) | dense time (s) | dense peak (MB) '
          '| time ratio | memory ratio | max rel diff |')
    print('|---|---|---|---|---|---|---|---|---|')
    last_dense = None
    with tempfile.TemporaryDirectory() as tmp:
        for h, w in GRIDS:
            n = h * w
            ours = measure_ours(h, w, a.threads, tmp, a.repeat)
            if n <= a.dense_limit:
                dense = measure('dense', h, w, a.threads, tmp)
                last_dense = (n, dense)
                diff = '%.1e' % max_relative_difference(tmp, h, w)
                t_d, m_d, mark = dense['seconds'], dense['peak_mb'], ''
            else:
                n0, d0 = last_dense
                t_d, m_d, mark = d0['seconds'] * (n / n0) ** 3, d0['peak_mb'] * (n / n0) ** 2, '*'
                diff = '-'
            m_o = max(ours['peak_mb'], 0.1)
            print('| %dx%d | %d | %.3f | %.1f | %.1f%s | %.0f%s | %.0fx | %.0fx | %s |'
                  % (h, w, n, ours['seconds'], m_o, t_d, mark, m_d, mark, t_d / ours['seconds'],
                     m_d / m_o, diff), flush=True)
    if mark:
        print('* extrapolated from the largest measured dense grid: time ~ n^3, memory ~ n^2.')
    print('random walk vs dense at %dx%d: %.0fx faster, %.0fx less memory (target >= %dx, '
          '>= %dx)%s' % (h, w, t_d / ours['seconds'], m_d / m_o, TARGET_TIME, TARGET_MEMORY,
                         ' (dense extrapolated)' if mark else ''))


if __name__ == '__main__':
    main()
