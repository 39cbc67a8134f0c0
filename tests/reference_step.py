"""Shared checks of the one-step training fixtures (train_cam_step.npz,
train_irn_step.npz; fixtures/reference/README.md section 8)."""
import numpy as np
import torch
from torch.utils.data import DataLoader

from misc import imutils
import run_sample


def reference_args(*flags):
    """run_sample's defaults with ``flags`` (name, value, ...): what run() receives."""
    return run_sample.build_parser().parse_args([str(f) for f in flags])


def fixture_batch(dataset, ref, monkeypatch):
    """The fixture's batch from one of our datasets (random transforms off), every crop
    window placed at the fixture's offsets; checks the draws and the crop boxes."""
    crop = int(ref['crop_size'])
    draws = iter(range(len(ref['names'])))

    def fixture_offsets(imgsize, cropsize):
        i = next(draws)
        assert (tuple(imgsize), cropsize) == (tuple(ref['image_sizes'][i]), crop)
        return tuple(int(v) for v in ref['crop_offsets'][i])

    monkeypatch.setattr(imutils, 'random_crop_offsets', fixture_offsets)
    pack = next(iter(DataLoader(dataset, batch_size=len(dataset), shuffle=False,
                                num_workers=0)))
    assert next(draws, None) is None                      # one crop per image
    assert list(pack['name']) == list(ref['names'])
    for size, offsets, box in zip(ref['image_sizes'], ref['crop_offsets'], ref['crop_boxes']):
        assert imutils.crop_box(tuple(size), crop, *offsets) == tuple(box)
    return pack


def group_param_names(model, optimizer):
    """Parameter names of every optimiser group, in group order."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [[names[id(p)] for p in g['params']] for g in optimizer.param_groups]


def check_optimizer_before_step(model, optimizer, ref):
    """Group membership and the hyper-parameters the first step uses, exactly."""
    groups = optimizer.param_groups
    expected = [list(ref['group%d_param_names' % k]) for k in range(len(ref['group_lr']))]
    assert group_param_names(model, optimizer) == expected
    for key, field in (('group_initial_lr', 'initial_lr'), ('group_lr', 'lr'),
                       ('group_momentum', 'momentum'), ('group_weight_decay', 'weight_decay'),
                       ('group_dampening', 'dampening'), ('group_nesterov', 'nesterov')):
        assert [g[field] for g in groups] == ref[key].tolist(), key


def check_poly_lr_after_step(optimizer, ref):
    """The next step's lr: initial * (1 - global_step / max_step) ** poly_power."""
    factor = (1 - int(ref['global_step_after']) / int(ref['max_step'])) ** float(ref['poly_power'])
    np.testing.assert_allclose([g['lr'] for g in optimizer.param_groups],
                               ref['group_initial_lr'] * factor, rtol=1e-12)


def numpy_of(tensor):
    return tensor.detach().cpu().double().numpy()


def assert_within_max(ours, ref, rel, name=''):
    """max |ours - ref| <= rel * max |ref| (the README's tolerance relative to the maximum)."""
    ours = numpy_of(ours)
    assert ours.shape == ref.shape, name
    diff = np.abs(ours - ref).max()
    assert diff <= rel * np.abs(ref).max(), '%s: max abs diff %g, max abs reference %g' % (
        name, diff, np.abs(ref).max())


def frozen_snapshot(model):
    """Copies of the parameters that do not require a gradient."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}


def check_frozen_unchanged(model, before):
    """Every frozen parameter is bit-identical after the step."""
    params = dict(model.named_parameters())
    assert before
    for name, tensor in before.items():
        assert torch.equal(params[name], tensor), name


def check_grad_norms(model, ref, rtol):
    """The gradient of exactly ``grad_not_none_names``, with the fixture's L2 norms."""
    params = dict(model.named_parameters())
    with_grad = [n for n, p in params.items() if p.grad is not None]
    assert with_grad == list(ref['grad_not_none_names'])
    norms = [float(params[n].grad.double().norm()) for n in with_grad]
    np.testing.assert_allclose(norms, ref['grad_norms'], rtol=rtol)


def fixture_keys(ref, prefix):
    """Parameter names of the fixture keys ``prefix + name`` (``grad__``, ``after__``)."""
    return [k[len(prefix):] for k in ref.files if k.startswith(prefix)]
