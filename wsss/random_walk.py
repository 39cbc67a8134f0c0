"""Random walk of IRNet pseudo masks with a SPARSE transition matrix (docs/method.md#random-walk).

The reference builds the dense HW x HW affinity matrix A (1 - max boundary on
the path of every pair within the radius, symmetric, 1 on the diagonal), the
transition T = A^beta normalised per column, squares T exp_times times and
computes rw = x T^(2^exp_times) with x = cams * (1 - edge): O((HW)^2) memory,
O((HW)^3) time. Here A has at most 69 non-zeros per row (radius 5) and rw is
obtained by 2^exp_times sparse products y <- T^t y over all class maps at
once (exactly the same product, reassociated), in float64 by default.

A is built straight on the image grid, one offset (dy, dx) at a time, in a
[H, W, n_offsets] table (offsets sorted, so each row is a CSR row with sorted
columns); the reference's padding (1.0 on the left, right and bottom) only
touches pairs it crops away, so it is never materialised. As A is
symmetric, T^t = D^-1 A^beta with D the row sums of A^beta (= the column sums
the reference divides by).
"""
import warnings

import torch
import torch.nn.functional as F

from wsss.path_index import PathIndex, paths_by_length


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


def search_paths(radius):
    """[(direction (dy, dx), path cells [(y, x), ...])] of the reference's half-plane directions."""
    return [(tuple(path[0]), [tuple(cell) for cell in path])
            for group in paths_by_length(radius) for path in group]


def pair_slices(direction, height, width):
    """Source rows/columns (slices) of the pairs p -> p + direction inside an H x W grid."""
    dy, dx = direction
    x0 = min(max(0, -dx), width)
    return slice(0, max(height - dy, 0)), slice(x0, max(width - max(0, dx), x0))


def shifted(region, direction):
    """The slices of ``region`` moved by ``direction`` (dy, dx)."""
    ys, xs = region
    return slice(ys.start + direction[0], ys.stop + direction[0]), \
        slice(xs.start + direction[1], xs.stop + direction[1])


def direction_affinities(edge, radius):
    """[(direction, 1 - max edge on the path [h_d, w_d])] for the pairs inside the image.

    ``edge`` [H, W]; the grid of direction d holds the sources whose
    destination lies in the image, so every path cell does too.
    """
    height, width = edge.shape
    out = []
    for direction, cells in search_paths(radius):
        region = pair_slices(direction, height, width)
        path_max = edge[shifted(region, cells[0])]
        for cell in cells[1:]:
            path_max = torch.maximum(path_max, edge[shifted(region, cell)])
        out.append((direction, 1 - path_max))
    return out


def neighbour_table(edge, radius, beta=1):
    """A^beta as a table [H, W, n_offsets] with its validity mask and the sorted offsets.

    Entry [y, x, k] is the weight of the pair (y, x) -> (y, x) + offsets[k]
    (1 on the diagonal); False in the mask where the neighbour lies outside
    the image (the pairs the reference crops away).
    """
    height, width = edge.shape
    pairs = direction_affinities(edge, radius)
    offsets = sorted([(0, 0)] + [d for d, _ in pairs] + [(-d[0], -d[1]) for d, _ in pairs])
    column = {offset: k for k, offset in enumerate(offsets)}
    values = edge.new_zeros(height, width, len(offsets))
    valid = torch.zeros(height, width, len(offsets), dtype=torch.bool, device=edge.device)
    values[:, :, column[(0, 0)]] = 1
    valid[:, :, column[(0, 0)]] = True
    for direction, aff in pairs:
        weight = aff ** beta
        region = pair_slices(direction, height, width)
        back = (-direction[0], -direction[1])
        for (ys, xs), k in ((region, column[direction]),
                            (shifted(region, direction), column[back])):
            values[ys, xs, k] = weight
            valid[ys, xs, k] = True
    return values, valid, offsets


def table_to_csr(values, valid, offsets):
    """The [H, W, n_offsets] neighbour table as an (HW x HW) sparse CSR matrix (int32 indices)."""
    height, width, n_offsets = values.shape
    device = values.device
    flat_offsets = torch.tensor([dy * width + dx for dy, dx in offsets], dtype=torch.int32,
                                device=device)
    pixels = torch.arange(height * width, dtype=torch.int32, device=device)
    columns = torch.masked_select(pixels.view(height, width, 1) + flat_offsets, valid)
    crow = torch.zeros(height * width + 1, dtype=torch.int32, device=device)
    torch.cumsum(valid.view(-1, n_offsets).sum(1, dtype=torch.int32), 0, out=crow[1:])
    n = height * width
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='Sparse CSR tensor support is in beta')
        return torch.sparse_csr_tensor(crow, columns, torch.masked_select(values, valid), (n, n),
                                       check_invariants=False)


def sparse_affinity(edge, radius=5):
    """Symmetric affinity A of the H x W grid (``edge`` [1, H, W]) as sparse CSR, diagonal 1."""
    return table_to_csr(*neighbour_table(edge[0], radius))


def walk_matrix(edge, radius=5, beta=10):
    """T^t as sparse CSR: T = A^beta divided by its column sums (the reference's transition).

    A is symmetric, so T^t = D^-1 A^beta, D = the row sums of A^beta.
    """
    values, valid, offsets = neighbour_table(edge[0], radius, beta)
    values /= values.sum(dim=2, keepdim=True)
    return table_to_csr(values, valid, offsets)


def propagate_to_edge(cams, edge, beta=10, exp_times=8, radius=5, dtype=torch.float64):
    """rw = (cams * (1 - edge)) T^(2^exp_times); cams [C, H, W], edge [1, H, W] -> [C, 1, H, W].

    Memory grows linearly with H*W. Computed in ``dtype`` (float64 by
    default) and returned as float32.
    """
    n_maps, height, width = cams.shape
    edge = edge.to(dtype)
    trans_t = walk_matrix(edge, radius, beta)
    y = (cams.to(dtype) * (1 - edge)).reshape(n_maps, -1).t().contiguous()
    spare = torch.empty_like(y)
    for _ in range(2 ** exp_times):
        torch.mm(trans_t, y, out=spare)
        y, spare = spare, y
    return y.t().reshape(n_maps, 1, height, width).float()
