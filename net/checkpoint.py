"""Reading and writing CAM-network weights.

Our own format is safetensors. The authors' checkpoints (``res50_cam.pth``,
``res50_qa_clims.pth``) are plain torch state dicts in which every backbone
tensor appears under several names (``resnet50.layer1...``, ``stage1.4...``,
``backbone.0.4...``, ``classifier.weight`` / ``newly_added.0.weight``); they
are read with ``weights_only=True`` and reduced to the canonical names.
"""
import os

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from misc.io import atomic_write

# Prefixes under which the reference registers modules a second time.
REFERENCE_ALIAS_PREFIXES = ('stage1.', 'stage2.', 'stage3.', 'stage4.', 'backbone.',
                            'newly_added.')


def read_state_dict(path):
    """A ``{name: tensor}`` dict from a safetensors or torch state-dict file."""
    if not os.path.isfile(path):
        raise FileNotFoundError('weights file %s does not exist' % path)
    if path.endswith('.safetensors'):
        return load_file(path)
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise ValueError('%s could not be read as a torch state dict with weights_only=True '
                         '(%s)' % (path, str(e).splitlines()[0])) from None
    if isinstance(state, dict) and isinstance(state.get('state_dict'), dict):
        state = state['state_dict']
    if not isinstance(state, dict):
        raise ValueError('%s holds a %s, not a state dict' % (path, type(state).__name__))
    return state


def canonical_state_dict(state, alias_prefixes=REFERENCE_ALIAS_PREFIXES):
    """Drop ``module.`` (DataParallel/DDP) prefixes and the reference's alias names."""
    out = {}
    for key, value in state.items():
        if key.startswith('module.'):
            key = key[len('module.'):]
        if key.startswith(alias_prefixes):
            continue
        out[key] = value
    return out


def load_weights(model, path):
    """Load ``path`` into ``model`` strictly; a mismatch is an error naming the file."""
    aliases = getattr(model, 'reference_alias_prefixes', REFERENCE_ALIAS_PREFIXES)
    state = canonical_state_dict(read_state_dict(path), aliases)
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in state)
    unexpected = sorted(k for k in state if k not in expected)
    wrong_shape = sorted(k for k in expected if k in state and state[k].shape != expected[k].shape)
    if missing or unexpected or wrong_shape:
        raise ValueError(
            'weights %s do not fit %s: %d missing keys %s, %d unexpected keys %s, %d shape '
            'mismatches %s (is this the checkpoint of another network?)'
            % (path, type(model).__name__, len(missing), missing[:4], len(unexpected),
               unexpected[:4], len(wrong_shape),
               ['%s %s vs %s' % (k, tuple(state[k].shape), tuple(expected[k].shape))
                for k in wrong_shape[:2]]))
    model.load_state_dict(state, strict=True)
    return model


def load_backbone(resnet, path, prefix='resnet50.'):
    """Load the ``resnet50.*`` tensors of a CAM/IRNet checkpoint into a bare ResNet-50."""
    state = canonical_state_dict(read_state_dict(path))
    backbone = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    expected = resnet.state_dict()
    missing = sorted(k for k in expected if k not in backbone)
    if missing:
        raise ValueError('%s has no ResNet-50 backbone under %r: %d missing keys, first %s'
                         % (path, prefix, len(missing), missing[:3]))
    resnet.load_state_dict({k: backbone[k] for k in expected}, strict=True)
    return resnet


def save_weights(model, path, metadata=None):
    """Atomically write the model's state dict as safetensors (``metadata``: str -> str)."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    data = save(state, metadata)
    with atomic_write(path) as f:
        f.write(data)


def read_weights_metadata(path):
    """The metadata of a safetensors file ({} for other formats or none stored)."""
    if not path.endswith('.safetensors') or not os.path.isfile(path):
        return {}
    with safe_open(path, framework='pt') as f:
        return dict(f.metadata() or {})
