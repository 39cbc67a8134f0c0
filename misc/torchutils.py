"""Optimisers and schedules with the reference's effective settings, and the
floating-point types the precision flags name."""
import torch

# --clip_dtype, --vqa_dtype: name -> torch dtype
FLOAT_DTYPES = {'float32': torch.float32, 'float16': torch.float16, 'bfloat16': torch.bfloat16}


def cpu_has_bf16_kernels():
    """Whether this CPU's oneDNN runs bf16 natively (AVX512-BF16 or AMX); elsewhere torch
    emulates bf16, slower than float32."""
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def autocast_is_fast(device):
    """Whether ``--amp`` speeds ``device`` up: CUDA (fp16) or a CPU with bf16 kernels."""
    return device.type == 'cuda' or (device.type == 'cpu' and cpu_has_bf16_kernels())


def poly_lr_lambda(max_step, power=0.9):
    """Multiplier of step k: (1 - k/max_step)^power, frozen at k = max_step - 1 afterwards.

    The reference PolyOptimizer updates the lr only while global_step <
    max_step, so steps past the end keep the last value (docs/quirks.md#poly-schedule-end,
    tests/fixtures/reference/optimizer.npz).
    """
    def factor(step):
        return (1 - min(step, max_step - 1) / max_step) ** power
    return factor


def stepwise_poly_lr_lambda(max_step, power=0.9, every=10):
    """deeplab-pytorch's PolynomialLR: (1 - k'/max_step)^power with k' = k rounded down
    to a multiple of ``every`` (the lr is recomputed every ``every`` iterations)."""
    def factor(step):
        return (1 - (step - step % every) / max_step) ** power
    return factor


def reference_poly_sgd(param_groups, weight_decay, max_step, power=0.9, fix_momentum_quirk=False):
    """SGD + poly LambdaLR reproducing the reference PolyOptimizer.

    IRNet's PolyOptimizer calls ``SGD.__init__(params, lr, weight_decay)``,
    so the weight decay lands in SGD's positional momentum slot: the
    reference trains with momentum = weight_decay (1e-4) and the group
    weight decay. That is the default here; ``fix_momentum_quirk=True``
    uses momentum 0.9 instead (what the PolyOptimizer signature intended).

    ``param_groups``: list of dicts with 'params' and 'lr' (and optionally
    'weight_decay', default ``weight_decay``). Call ``scheduler.step()``
    after every ``optimizer.step()``.
    """
    groups = [dict(g, weight_decay=g.get('weight_decay', weight_decay)) for g in param_groups]
    momentum = 0.9 if fix_momentum_quirk else weight_decay
    optimizer = torch.optim.SGD(groups, lr=groups[0]['lr'], momentum=momentum,
                                weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, poly_lr_lambda(max_step, power))
    return optimizer, scheduler
