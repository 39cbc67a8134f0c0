"""The demo's stand-in for ImageNet pretraining (tools/pretrain_backbone.py)."""
import pytest
import torch
import torchvision

from tools.pretrain_backbone import pretrain_backbone


def conv_output_dtypes_while_pretraining(out, amp):
    """The dtypes of every convolution's output during a 2-step pretraining with ``amp``."""
    dtypes = set()

    def record(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d) and module.training:
            dtypes.add(output.dtype)
    handle = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        info = pretrain_backbone(str(out), seed=0, scenes=3, steps=2, amp=amp)
    finally:
        handle.remove()
    return dtypes, info


@pytest.mark.parametrize('amp, dtype', [(False, torch.float32), (True, torch.bfloat16)])
def test_pretraining_runs_its_convolutions_in_bf16_with_amp_only(tmp_path, amp, dtype):
    out = tmp_path / 'backbone.pth'
    dtypes, info = conv_output_dtypes_while_pretraining(out, amp)
    assert dtypes == {dtype}
    assert info['path'] == str(out) and info['crops'] > 0 and 0.0 <= info['accuracy'] <= 1.0
    state = torch.load(out, weights_only=True)
    expected = {k for k in torchvision.models.resnet50().state_dict() if not k.startswith('fc.')}
    assert set(state) == expected
    assert all(v.dtype in (torch.float32, torch.int64) for v in state.values())
    assert all(torch.isfinite(v.float()).all() for v in state.values())
