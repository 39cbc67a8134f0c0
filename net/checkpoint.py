"""Reading and writing CAM-network weights.

Our own format is safetensors. The authors' checkpoints (``res50_cam.pth``,
``res50_qa_clims.pth``) are plain torch state dicts in which every backbone
tensor appears under several names (``resnet50.layer1...``, ``stage1.4...``,
``backbone.0.4...``, ``classifier.weight`` / ``newly_added.0.weight``); they
are read with ``weights_only=True`` and reduced to the canonical names.
"""
import os
import pickle
import re

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from misc.io import atomic_write, safetensors_bytes

# Prefixes under which the reference registers modules a second time.
REFERENCE_ALIAS_PREFIXES = ('stage1.', 'stage2.', 'stage3.', 'stage4.', 'backbone.',
                            'newly_added.')
WEIGHTS_FIX = 'copy or download it again'
_UNSUPPORTED_GLOBAL = re.compile(r'Unsupported global: GLOBAL ([\w.]+)')


def first_line(error):
    """The first non-empty line of an exception's message, else its type name."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def require_nonempty(path, what, fix):
    """A missing or zero-byte file is an error naming it and saying what to do."""
    if not os.path.isfile(path):
        raise FileNotFoundError('%s %s does not exist' % (what, path))
    if os.path.getsize(path) == 0:
        raise ValueError('%s %s is empty (0 bytes): %s' % (what, path, fix))


def torch_load_tensors(path, what, fix, map_location='cpu'):
    """``torch.load(weights_only=True)`` with errors that name the file and say what to do.

    A file that holds other Python objects than tensors is refused: reading
    them would run code stored in the file.
    """
    require_nonempty(path, what, fix)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = _UNSUPPORTED_GLOBAL.search(str(e))
        raise ValueError('%s %s holds Python objects other than tensors%s; it is not read, since '
                         'reading them would run code from the file. Where the file comes from, '
                         'save only its tensors (a state dict: torch.save(model.state_dict(), '
                         '...), or safetensors)'
                         % (what, path, ' (%s)' % found.group(1) if found else '')) from None
    except Exception as e:
        raise ValueError('%s %s cannot be read (%s): it is truncated or not a PyTorch file; %s'
                         % (what, path, first_line(e), fix)) from None


def read_safetensors(path, what='weights file', fix=WEIGHTS_FIX):
    """The tensors of a safetensors file; an empty or truncated file is an error naming it."""
    require_nonempty(path, what, fix)
    try:
        return load_file(path)
    except SafetensorError as e:
        raise safetensors_error(path, what, fix, e) from None


def safetensors_error(path, what, fix, error):
    return ValueError('%s %s is not a complete safetensors file (%s): it is truncated or '
                      'damaged; %s' % (what, path, first_line(error), fix))


def read_state_dict(path):
    """A ``{name: tensor}`` dict from a safetensors or torch state-dict file."""
    if path.endswith('.safetensors'):
        return read_safetensors(path)
    state = torch_load_tensors(path, 'weights file', WEIGHTS_FIX)
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


def state_dict_mismatch(state, expected):
    """What keeps ``state`` from loading strictly where ``expected`` is the module's
    state dict: '' when it fits, else the counts and first names of the missing
    keys, the unexpected keys and the shape mismatches."""
    missing = sorted(k for k in expected if k not in state)
    unexpected = sorted(k for k in state if k not in expected)
    wrong_shape = sorted(k for k in expected if k in state and state[k].shape != expected[k].shape)
    if not (missing or unexpected or wrong_shape):
        return ''
    return '%d missing keys %s, %d unexpected keys %s, %d shape mismatches %s' % (
        len(missing), missing[:4], len(unexpected), unexpected[:4], len(wrong_shape),
        ['%s %s vs %s' % (k, tuple(state[k].shape), tuple(expected[k].shape))
         for k in wrong_shape[:2]])


def load_state_strictly(module, state, what, hint=''):
    """Load ``state`` into ``module``; a mismatch is a ValueError
    '<what>: <mismatch><hint>' (``what`` names the file)."""
    mismatch = state_dict_mismatch(state, module.state_dict())
    if mismatch:
        raise ValueError('%s: %s%s' % (what, mismatch, hint))
    module.load_state_dict(state, strict=True)
    return module


def load_weights(model, path):
    """Load ``path`` into ``model`` strictly; a mismatch is an error naming the file."""
    aliases = getattr(model, 'reference_alias_prefixes', REFERENCE_ALIAS_PREFIXES)
    state = canonical_state_dict(read_state_dict(path), aliases)
    return load_state_strictly(model, state, 'weights %s do not fit %s'
                               % (path, type(model).__name__),
                               ' (is this the checkpoint of another network?)')


def load_backbone(backbone, path, prefix):
    """Load the ``<prefix>*`` tensors of a CAM/IRNet checkpoint (``resnet50.*``) into a
    bare backbone."""
    state = canonical_state_dict(read_state_dict(path))
    tensors = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    expected = backbone.state_dict()
    missing = sorted(k for k in expected if k not in tensors)
    if missing:
        raise ValueError('%s has no %s backbone under %r: %d missing keys, first %s'
                         % (path, type(backbone).__name__, prefix, len(missing), missing[:3]))
    backbone.load_state_dict({k: tensors[k] for k in expected}, strict=True)
    return backbone


def save_weights(model, path, metadata=None):
    """Atomically write the model's state dict as safetensors (``metadata``: str -> str)."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    data = safetensors_bytes(state, metadata)
    with atomic_write(path) as f:
        f.write(data)


def read_weights_metadata(path):
    """The metadata of a safetensors file ({} for other formats or none stored)."""
    if not path.endswith('.safetensors') or not os.path.isfile(path):
        return {}
    require_nonempty(path, 'weights file', WEIGHTS_FIX)
    try:
        with safe_open(path, framework='pt') as f:
            return dict(f.metadata() or {})
    except SafetensorError as e:
        raise safetensors_error(path, 'weights file', WEIGHTS_FIX, e) from None
