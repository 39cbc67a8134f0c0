"""Random walk of IRNet pseudo masks with a SPARSE transition matrix (docs/method.md#random-walk).

The reference builds the dense HW x HW affinity matrix A (1 - max boundary on
the path of every pair within the radius, symmetric, 1 on the diagonal), the
transition T = A^beta normalised per column, squares T exp_times times and
computes rw = x T^(2^exp_times) with x = cams * (1 - edge): O((HW)^2) memory,
O((HW)^3) time. Here A has O(HW * n_dirs) non-zeros and rw is obtained by
2^exp_times sparse products y <- y T (exactly the same product, reassociated),
in float64 by default.
"""
import warnings

import torch
import torch.nn.functional as F

from misc.path_index import PathIndex


def padded_path_affinity(edge, radius):
    """Pair affinities on the edge map padded with 1.0 (left, right, bottom by ``radius``).

    Returns (path_index, padded size, affinity [n_dirs, n_src]) in the
    reference layout (``edge_to_affinity``).
    """
    height, width = edge.shape[-2:]
    size = (height + radius, width + 2 * radius)
    path_index = PathIndex(radius=radius, default_size=size)
    padded = F.pad(edge.reshape(1, height, width), (radius, radius, 0, radius), value=1.0)
    flat = padded.reshape(-1)
    groups = []
    for ind in path_index.path_indices:
        ind = torch.from_numpy(ind).to(edge.device)
        dist = flat[ind.reshape(-1)].reshape(ind.shape)
        groups.append(1 - dist.max(dim=1).values)
    return path_index, size, torch.cat(groups, dim=0)


def sparse_affinity(edge, radius=5):
    """Symmetric affinity of the H x W grid as a sparse COO matrix (diagonal 1).

    Pairs with an end in the padding are dropped, as the reference crops
    its dense matrix to the image.
    """
    height, width = edge.shape[-2:]
    path_index, (ph, pw), aff = padded_path_affinity(edge, radius)
    device = edge.device
    src = torch.from_numpy(path_index.src_indices).to(device).expand(aff.shape[0], -1).reshape(-1)
    dst = torch.from_numpy(path_index.dst_indices).to(device).reshape(-1)
    values = aff.reshape(-1)

    def to_image_index(index):
        y, x = index // pw, index % pw - radius
        inside = (y < height) & (x >= 0) & (x < width)
        return y * width + x, inside

    src, src_in = to_image_index(src)
    dst, dst_in = to_image_index(dst)
    keep = src_in & dst_in
    src, dst, values = src[keep], dst[keep], values[keep]
    n = height * width
    diag = torch.arange(n, device=device)
    rows = torch.cat([src, diag, dst])
    cols = torch.cat([dst, diag, src])
    vals = torch.cat([values, torch.ones(n, dtype=values.dtype, device=device), values])
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (n, n),
                                   check_invariants=False).coalesce()


def transition_matrix(affinity, beta):
    """T = A^beta (elementwise), each column divided by its sum (sparse COO)."""
    rows, cols = affinity.indices()
    values = affinity.values() ** beta
    col_sum = torch.zeros(affinity.shape[1], dtype=values.dtype, device=values.device)
    col_sum.index_add_(0, cols, values)
    return torch.sparse_coo_tensor(affinity.indices(), values / col_sum[cols], affinity.shape,
                                   check_invariants=False)


def propagate_to_edge(cams, edge, beta=10, exp_times=8, radius=5, dtype=torch.float64):
    """rw = (cams * (1 - edge)) T^(2^exp_times); cams [C, H, W], edge [1, H, W] -> [C, 1, H, W].

    Memory grows linearly with H*W. Computed in ``dtype`` (float64 by
    default) and returned as float32.
    """
    n_maps, height, width = cams.shape
    edge64 = edge.to(dtype)
    trans = transition_matrix(sparse_affinity(edge64, radius), beta)
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='Sparse CSR tensor support is in beta')
        trans_t = trans.t().coalesce().to_sparse_csr()
    y = (cams.to(dtype) * (1 - edge64)).reshape(n_maps, -1).t()
    for _ in range(2 ** exp_times):
        y = trans_t @ y
    return y.t().reshape(n_maps, 1, height, width).float()
