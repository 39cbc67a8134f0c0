"""CLIP and the mask-adapted CLIP of OVSeg (docs/method.md#text-features,
docs/method.md#mask-adapted-clip), on
``open_clip`` (the maintained package; it builds a model from any OpenAI
state dict, tiny ones included, and its tokenizer equals OpenAI's).

Weights come from local files only:
* OpenAI's releases (``ViT-L-14.pt``: a TorchScript archive) or a plain state
  dict (``torch.save`` or safetensors) in OpenAI's key layout;
* OVSeg's ``ovseg_swinbase_vitL14_ft_mpt.pth``: a checkpoint dict whose
  ``model`` entry holds the CLIP under ``clip_adapter.clip_model.``, with the
  mask-prompt embeddings ``visual.mask_embedding`` [depth, n_patches, width].
The model is frozen (eval mode, no gradient into its weights); gradients
still flow to its input images.
"""
import hashlib
import os
import zipfile

import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import build_model_from_openai_state_dict
from safetensors.torch import load_file
from torch import nn

OPENAI_FILES = {'RN50': 'RN50.pt', 'RN101': 'RN101.pt', 'ViT-B/32': 'ViT-B-32.pt',
                'ViT-B/16': 'ViT-B-16.pt', 'ViT-L/14': 'ViT-L-14.pt',
                'ViT-L/14@336px': 'ViT-L-14-336px.pt'}
OVSEG_PREFIX = 'clip_adapter.clip_model.'
MASK_EMBEDDING = 'visual.mask_embedding'


def default_cache_dir():
    return os.path.join(os.path.expanduser('~'), '.cache', 'clip')


def resolve_clip_file(name_or_path, cache_dir=None):
    """A path as given, or OpenAI's file name of a model name in the CLIP cache folder."""
    if name_or_path in OPENAI_FILES:
        path = os.path.join(cache_dir or default_cache_dir(), OPENAI_FILES[name_or_path])
        hint = ('put OpenAI\'s %s there (the file clip.load downloads) or pass '
                '--clip_weights PATH' % OPENAI_FILES[name_or_path])
    else:
        path, hint = name_or_path, 'pass the path of a CLIP or OVSeg weights file'
    if not os.path.isfile(path):
        raise FileNotFoundError('CLIP weights %s do not exist: %s' % (path, hint))
    return path


def is_torchscript_archive(path):
    """OpenAI's .pt files are TorchScript zips (they hold a ``code/`` folder)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any('/code/' in n or n.startswith('code/') for n in zf.namelist())


def read_clip_state_dict(path):
    """CLIP weights in OpenAI's key layout from any supported file (see module doc)."""
    if path.endswith('.safetensors'):
        state = load_file(path)
    elif is_torchscript_archive(path):
        state = torch.jit.load(path, map_location='cpu').state_dict()
    else:
        state = torch.load(path, map_location='cpu', weights_only=True)
    if isinstance(state, dict) and isinstance(state.get('model'), dict):
        state = state['model']
    if any(k.startswith(OVSEG_PREFIX) for k in state):
        state = {k[len(OVSEG_PREFIX):]: v for k, v in state.items() if k.startswith(OVSEG_PREFIX)}
    if 'visual.proj' not in state or 'token_embedding.weight' not in state:
        raise ValueError('%s does not hold CLIP ViT weights in OpenAI\'s layout (no visual.proj '
                         '/ token_embedding.weight)' % path)
    return {k: v for k, v in state.items()
            if k not in ('input_resolution', 'context_length', 'vocab_size')}


def weights_checksum(state):
    """sha256 over sorted names and float32 little-endian bytes: the model's identity."""
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode() + b'\0')
        digest.update(state[name].detach().float().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def tokenize(texts):
    """OpenAI CLIP tokens [N, 77] (int64)."""
    return open_clip.tokenizer.tokenize(texts).long()


class MaskCLIP(nn.Module):
    """A frozen CLIP whose image encoder optionally takes a binary mask prompt.

    With ``mask_embedding`` (OVSeg mask prompt tuning, docs/method.md#mask-adapted-clip):
    a patch is kept if any of its pixels is in the mask (ceil of the average
    pool); other patch tokens are replaced by ``mask_embedding[0]`` before
    the class token, positions and ln_pre, and by ``mask_embedding[d]`` after
    transformer block d for d = 1 .. depth - 1. Without a mask (or without
    embeddings) it is plain CLIP.
    """

    def __init__(self, clip, mask_embedding=None, name='clip', checksum=''):
        super().__init__()
        self.clip = clip
        self.name, self.checksum = name, checksum
        if mask_embedding is not None:
            self.mask_embedding = nn.Parameter(mask_embedding, requires_grad=False)
        else:
            self.mask_embedding = None
        self.requires_grad_(False)
        self.eval()

    def train(self, mode=True):
        """Always in eval mode (frozen)."""
        return super().train(False)

    @property
    def input_resolution(self):
        size = self.clip.visual.image_size
        return size[0] if isinstance(size, (tuple, list)) else size

    @property
    def dtype(self):
        return self.clip.visual.conv1.weight.dtype

    def patch_keep(self, mask):
        """[B, n_patches, 1]: 1 where any pixel of the patch is in the mask."""
        patch = self.clip.visual.conv1.kernel_size[0]
        return torch.ceil(F.avg_pool2d(mask.to(torch.float32), patch, patch)).flatten(1)[..., None]

    def encode_image(self, image, mask=None):
        """Image features [B, D] (unnormalised); ``mask`` [B, 1, S, S] binary or None."""
        if mask is None or self.mask_embedding is None:
            return self.clip.encode_image(image.to(self.dtype))
        visual = self.clip.visual
        x = visual.conv1(image.to(self.dtype)).flatten(2).transpose(1, 2)
        keep = self.patch_keep(mask).to(x.dtype)
        embeddings = self.mask_embedding.to(x.dtype)
        x = x * keep + embeddings[0][None] * (1 - keep)
        cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
        x = visual.ln_pre(x)
        batch_first = getattr(visual.transformer, 'batch_first', True)
        for depth, block in enumerate(visual.transformer.resblocks, start=1):
            x = block(x if batch_first else x.transpose(0, 1))
            x = x if batch_first else x.transpose(0, 1)
            if depth < len(embeddings):
                patches = x[:, 1:] * keep + embeddings[depth][None] * (1 - keep)
                x = torch.cat([x[:, :1], patches], dim=1)
        x = visual.ln_post(x[:, 0])
        return x @ visual.proj

    def encode_text(self, tokens):
        """Text features [N, D] (unnormalised) of token ids [N, 77]."""
        return self.clip.encode_text(tokens.to(self.clip.token_embedding.weight.device))

    def encode_prompts(self, texts, template='a photo of {}.'):
        """L2-normalised text features of ``template.format(t)`` for each text."""
        feats = self.encode_text(tokenize([template.format(t) for t in texts])).float()
        return feats / feats.norm(dim=-1, keepdim=True)


def build_clip(state, name='clip', dtype=torch.float32):
    """MaskCLIP from an OpenAI-layout state dict (float32 weights exactly as given)."""
    state = dict(state)
    mask_embedding = state.pop(MASK_EMBEDDING, None)
    checksum = weights_checksum(state if mask_embedding is None
                                else dict(state, **{MASK_EMBEDDING: mask_embedding}))
    clip = build_model_from_openai_state_dict(dict(state), cast_dtype=None).float()
    clip.load_state_dict(state, strict=True)
    model = MaskCLIP(clip, None if mask_embedding is None else mask_embedding.float(), name,
                     checksum)
    return model.to(dtype)


def load_clip(name_or_path, device='cpu', dtype=torch.float32, cache_dir=None):
    """Frozen MaskCLIP from a model name (``ViT-L/14``) or a weights file."""
    path = resolve_clip_file(name_or_path, cache_dir)
    model = build_clip(read_clip_state_dict(path), name=str(name_or_path), dtype=dtype)
    return model.to(device)
