"""Random walk of IRNet: our sparse propagation vs the reference's dense matrix.

    python bench/bench_random_walk.py [--threads 2] [--dense_limit 6000]

For grids 32x32, 63x94 and 94x125 with 3 classes (radius 5, beta 10,
exp_times 8) it times ``misc.random_walk.propagate_to_edge`` and the
reference formulation (dense HW x HW float32 affinity, transition matrix
squared 8 times, then cams @ T), which is implemented here only.

Each measurement runs in a fresh subprocess: peak memory = growth of the
process's high-water RSS (``ru_maxrss``) from just before the call to its
end, time = wall time of the call. The dense run is skipped above
``--dense_limit`` pixels; its time is then extrapolated from the largest
measured grid as t * (n / n0)^3 (8 dense n x n products dominate) and its
memory as m * (n / n0)^2; such cells are marked with '*'.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from misc.random_walk import padded_path_affinity, propagate_to_edge  # noqa: E402

GRIDS = ((32, 32), (63, 94), (94, 125))


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


def main():
    import tempfile
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--dense_limit', type=int, default=6000,
                   help='largest number of pixels for which the dense version is run')
    p.add_argument('--worker', nargs=3, metavar=('KIND', 'H', 'W'), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        return worker(a.worker[0], int(a.worker[1]), int(a.worker[2]), a.threads)
    print('| grid | pixels | ours time (s) | ours peak (MB) | dense time (s) | dense peak (MB) '
          '| time ratio | memory ratio | max rel diff |')
    print('|---|---|---|---|---|---|---|---|---|')
    last_dense = None
    with tempfile.TemporaryDirectory() as tmp:
        for h, w in GRIDS:
            n = h * w
            ours = measure('sparse', h, w, a.threads, tmp)
            if n <= a.dense_limit:
                dense = measure('dense', h, w, a.threads, tmp)
                last_dense = (n, dense)
                ref = torch.load(os.path.join(tmp, 'dense_%d_%d.pt' % (h, w)), weights_only=True)
                got = torch.load(os.path.join(tmp, 'sparse_%d_%d.pt' % (h, w)), weights_only=True)
                diff = '%.1e' % float((ref - got).abs().max() / ref.abs().max())
                t_d, m_d, mark = dense['seconds'], dense['peak_mb'], ''
            else:
                n0, d0 = last_dense
                t_d, m_d, mark = d0['seconds'] * (n / n0) ** 3, d0['peak_mb'] * (n / n0) ** 2, '*'
                diff = '-'
            m_o = max(ours['peak_mb'], 0.1)
            print('| %dx%d | %d | %.3f | %.1f | %.1f%s | %.0f%s | %.0fx | %.0fx | %s |'
                  % (h, w, n, ours['seconds'], m_o, t_d, mark, m_d, mark, t_d / ours['seconds'],
                     m_d / m_o, diff))
    print('* extrapolated from the largest measured dense grid: time ~ n^3, memory ~ n^2.')


if __name__ == '__main__':
    main()
