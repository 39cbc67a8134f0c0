"""The training engine (pipeline/engine.py): loss scaling only for fp16, the steps of an
epoch, resume from a state file of the documented format, TensorBoard scalars on request.
DDP (gloo, 2 processes) is exercised through the stages: test_train_cam, test_seg,
test_train_qa_clims."""
import io
import types

import pytest
import torch
from torch.utils.data import DistributedSampler

from conftest import REPO, VOC_MINI
from misc.io import release_outputs
from misc.logutil import setup_logging
from net.checkpoint import read_state_dict
from pipeline import engine, provenance
import run_sample
from test_docs import named_python_blocks

CPU = torch.device('cpu')


@pytest.mark.parametrize('device_type, amp, expected', [
    ('cuda', True, True), ('cuda', False, False), ('cpu', True, False), ('cpu', False, False)])
def test_grad_scaler_only_for_fp16_autocast(device_type, amp, expected):
    assert engine.needs_grad_scaler(device_type, amp) is expected
    assert (engine.amp_dtype(device_type) == torch.float16) is (device_type == 'cuda')


def test_bf16_steps_run_without_loss_scaling():
    w = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([w], lr=0.5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    optimiser = engine.Optimiser(optimizer, scheduler, CPU, amp=True)
    assert not optimiser.scaler.is_enabled()
    terms = optimiser.step(torch.nn.Identity(), [{'x': torch.ones(2)}],
                           lambda forward, pack: {'loss': (w * forward(pack['x'])).sum()})
    assert terms == {'loss': 2.0}
    torch.testing.assert_close(w.detach(), torch.full((2,), 0.5))


@pytest.mark.parametrize('n_images, world, batch, accumulate', [
    (10, 1, 2, 1), (11, 1, 4, 1), (11, 2, 2, 1), (13, 3, 2, 2), (7, 2, 4, 1), (9, 1, 2, 3)])
def test_steps_per_epoch_counts_what_the_loader_gives(n_images, world, batch, accumulate):
    data = list(range(n_images))
    sampler = DistributedSampler(data, num_replicas=world, rank=world - 1, shuffle=True,
                                 drop_last=True)
    expected = len(sampler) // batch // accumulate
    assert engine.steps_per_epoch(n_images, world, batch, accumulate) == expected
    if world == 1:
        args = types.SimpleNamespace(seed=0, num_workers=0)
        loader = engine.epoch_loader(data, batch, args, 0, True, True)
        assert len(list(engine.full_groups(loader, accumulate))) == expected


def toy_args(work_space, **flags):
    return types.SimpleNamespace(**dict(dict(seed=0, num_workers=0, amp=False, tensorboard=False,
                                             overwrite=True, work_space=str(work_space)), **flags))


def toy_dataset():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(12, generator=g)
    return [{'img': x[i], 'label': y[i]} for i in range(12)]


def toy_loss(forward, pack):
    return {'loss': ((forward(pack['img']).squeeze(1) - pack['label']) ** 2).mean()}


def toy_training(work_space, epochs_to_run, seed, **flags):
    """A linear regression trained by the engine (batch 4, 3 steps/epoch, a poly schedule
    over 3 epochs) for ``epochs_to_run`` epochs, logging into ``work_space/run.log``;
    returns (weights path, model, optimizer, scheduler)."""
    setup_logging(str(work_space))
    torch.manual_seed(seed)
    training = engine.Training('toy', toy_args(work_space, **flags), CPU, 'toy_list')
    steps = training.plan(toy_dataset(), 4, '--toy_batch_size')
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: (1 - s / 9) ** 0.9)
    path = str(work_space / 'toy.safetensors')
    training.fit(model, optimizer, scheduler, toy_loss, path, {'stage': 'toy', 'settings': {}},
                 steps * epochs_to_run)
    release_outputs()
    return path, model, optimizer, scheduler


def old_format_state(model, optimizer, scheduler, epochs_done):
    """A training state as the stages have written it since resumable training began:
    one torch.save'd dict (docs/formats.md#training-states)."""
    buf = io.BytesIO()
    torch.save({'model': model.state_dict(), 'optimizer': optimizer.state_dict(),
                'scheduler': scheduler.state_dict(), 'epochs_done': epochs_done}, buf)
    return buf.getvalue()


def test_resume_from_an_old_format_state_gives_the_uninterrupted_weights(tmp_path):
    full, _, _, _ = toy_training(tmp_path / 'full', 3, seed=0)
    part = tmp_path / 'part'
    _, model, optimizer, scheduler = toy_training(part, 1, seed=0)
    state = part / 'toy.train_state.pt'
    state.write_bytes(old_format_state(model, optimizer, scheduler, 1))
    (part / 'toy.safetensors').unlink()
    resumed, _, _, scheduler = toy_training(part, 3, seed=1)      # other initial weights
    assert 'toy: resuming after epoch 1 (at iteration 3)' in (part / 'run.log').read_text()
    assert scheduler.last_epoch == 9
    a, b = read_state_dict(full), read_state_dict(resumed)
    assert sorted(a) == ['bias', 'weight']
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    saved = torch.load(state, weights_only=True)
    assert saved['epochs_done'] == 3 and sorted(saved) == ['epochs_done', 'model', 'optimizer',
                                                           'scheduler']


def test_load_train_state_restores_an_old_format_file(tmp_path):
    _, model, optimizer, scheduler = toy_training(tmp_path, 2, seed=0)
    path = tmp_path / 'old.train_state.pt'
    path.write_bytes(old_format_state(model, optimizer, scheduler, 2))
    fresh = torch.nn.Linear(3, 1)
    fresh_optimizer = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    fresh_scheduler = torch.optim.lr_scheduler.LambdaLR(fresh_optimizer, lambda s: 1.0)
    assert engine.load_train_state(str(path), fresh, fresh_optimizer, fresh_scheduler, CPU) == 2
    release_outputs()
    assert fresh_scheduler.last_epoch == 6
    torch.testing.assert_close(fresh.weight, model.weight, rtol=0, atol=0)
    momentum = [fresh_optimizer.state[p]['momentum_buffer'] for p in fresh.parameters()]
    expected = [optimizer.state[p]['momentum_buffer'] for p in model.parameters()]
    for got, want in zip(momentum, expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_tensorboard_flag_writes_the_logged_terms(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    toy_training(tmp_path / 'off', 1, seed=0)
    assert not (tmp_path / 'off' / 'tb').exists()
    toy_training(tmp_path / 'on', 2, seed=0, tensorboard=True)
    events = EventAccumulator(str(tmp_path / 'on' / 'tb' / 'toy')).Reload()
    scalars = events.Scalars('toy/loss')
    assert [s.step for s in scalars] == list(range(1, 7))
    log = (tmp_path / 'on' / 'run.log').read_text()
    last_logged = float(log.split('toy epoch 2: loss ')[1].split()[0])
    assert scalars[-1].value == pytest.approx(last_logged, abs=1e-4)


def test_too_few_images_for_one_step_is_an_error(tmp_path):
    training = engine.Training('toy', toy_args(tmp_path), CPU, 'toy_list')
    with pytest.raises(ValueError, match=r'toy_list has 12 images, fewer than one iteration '
                       r'needs \(--toy_batch_size 8 x 2 accumulated\)'):
        training.plan(toy_dataset(), 8, '--toy_batch_size', accumulate=2)


def test_training_stage_example_of_extending_md_trains_and_resumes(tmp_path, monkeypatch):
    """docs/extending.md's minimal training stage, run as written on the mini VOC."""
    blocks = named_python_blocks(REPO / 'docs' / 'extending.md')
    module = types.ModuleType('train_probe')
    exec(blocks['step/train_probe.py'], module.__dict__)
    monkeypatch.setitem(provenance.RESULT_FLAGS, 'train_probe', ('seed',))
    args = run_sample.build_parser().parse_args([
        '--voc12_root', str(VOC_MINI), '--work_space', str(tmp_path), '--device', 'cpu',
        '--num_workers', '0', '--train_list', 'train', '--cam_batch_size', '2'])
    run_sample.resolve_args(args)
    setup_logging(str(tmp_path))
    module.run(args)
    weights = read_state_dict(str(tmp_path / 'probe.safetensors'))
    assert sorted(weights) == ['bias', 'weight'] and weights['weight'].shape == (20, 3)
    assert torch.load(tmp_path / 'probe.train_state.pt', weights_only=True)['epochs_done'] == 2
    module.run(args)
    release_outputs()
    assert 'train_probe: resuming after epoch 2 (at iteration 4)' in \
        (tmp_path / 'run.log').read_text()
    again = read_state_dict(str(tmp_path / 'probe.safetensors'))
    assert all(torch.equal(weights[k], again[k]) for k in weights)
