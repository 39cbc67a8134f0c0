"""FAT and the InfoNCE losses against the reference fixtures (losses.npz, fat.npz)."""
import numpy as np
import pytest
import torch

from conftest import REF
from net.losses import foreground_adaptive_threshold, info_nce_bg, info_nce_fg


def fat_cases():
    """Case numbers of fat.npz (one ``case{i}_x`` per case)."""
    with np.load(REF / 'fat.npz') as ref:
        return sorted(int(k[len('case'):-len('_x')]) for k in ref.files
                      if k.startswith('case') and k.endswith('_x'))


def loss_cases():
    with np.load(REF / 'losses.npz') as ref:
        return list(range(int(ref['n_cases'])))


@pytest.mark.parametrize('case', fat_cases())
def test_fat_matches_reference(case):
    ref = np.load(REF / 'fat.npz')
    x = torch.from_numpy(ref['case%d_x' % case])
    mask = foreground_adaptive_threshold(x, float(ref['alpha']))
    np.testing.assert_array_equal(mask.numpy(), ref['case%d_mask' % case])
    np.testing.assert_array_equal((x * mask).numpy(), ref['case%d_masked_cam' % case])


def test_fat_all_zero_map_gives_all_ones_and_no_gradient():
    x = torch.zeros(1, 1, 3, 3, requires_grad=True)
    mask = foreground_adaptive_threshold(x)
    assert torch.equal(mask, torch.ones_like(mask)) and not mask.requires_grad


def losses_case(ref, i, fn, which):
    img = torch.from_numpy(ref['case%d_img_feature' % i]).clone().requires_grad_(True)
    fg = torch.from_numpy(ref['case%d_fg_text' % i])
    bg = torch.from_numpy(ref['case%d_bg_text' % i])
    valid = torch.ones(1, bg.shape[0], dtype=torch.bool)
    loss = fn(img[None], fg, bg[None], valid, float(ref['temperature']))[0]
    loss.backward()
    np.testing.assert_allclose(loss.item(), ref['case%d_loss_%s' % (i, which)], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(img.grad.numpy(), ref['case%d_grad_img_%s' % (i, which)],
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('case', loss_cases())
def test_info_nce_matches_reference(case):
    ref = np.load(REF / 'losses.npz')
    losses_case(ref, case, info_nce_fg, 'fg')
    losses_case(ref, case, info_nce_bg, 'bg')


def test_batched_losses_equal_per_instance_with_padding():
    ref = np.load(REF / 'losses.npz')
    n = int(ref['n_cases'])
    img = torch.stack([torch.from_numpy(ref['case%d_img_feature' % i]) for i in range(n)])
    fg = torch.cat([torch.from_numpy(ref['case%d_fg_text' % i]) for i in range(n)])
    bgs = [torch.from_numpy(ref['case%d_bg_text' % i]) for i in range(n)]
    lmax = max(b.shape[0] for b in bgs)
    bg = torch.zeros(n, lmax, fg.shape[1])
    valid = torch.zeros(n, lmax, dtype=torch.bool)
    for i, b in enumerate(bgs):
        bg[i, :len(b)] = b
        valid[i, :len(b)] = True
    t = float(ref['temperature'])
    np.testing.assert_allclose(info_nce_fg(img, fg, bg, valid, t).numpy(),
                               [ref['case%d_loss_fg' % i] for i in range(n)], rtol=1e-4)
    np.testing.assert_allclose(info_nce_bg(img, fg, bg, valid, t).numpy(),
                               [ref['case%d_loss_bg' % i] for i in range(n)], rtol=1e-4)
