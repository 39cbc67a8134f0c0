"""A tiny, randomly initialised CLIP with mask-prompt embeddings, in OpenAI's
state-dict layout, for the demo and tests (no real CLIP can be downloaded).

    python tools/make_tiny_clip.py --out demo_out/tiny_clip.safetensors [--seed 0]

Embedding 32, ViT width 64 with 2 blocks on 64x64 images (16x16 patches),
text width 64 with 2 blocks, OpenAI's 49,408-token vocabulary, mask
embeddings [3, 16, 64]. The same seed gives the same weights.
"""
import argparse
import os
import sys

import torch
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
from safetensors.torch import save

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from misc.io import atomic_write  # noqa: E402

MASK_PROMPT_DEPTH = 3


def tiny_clip_state_dict(seed=0):
    """OpenAI-layout state dict of a tiny CLIP (+ visual.mask_embedding)."""
    torch.manual_seed(seed)
    model = CLIP(32, CLIPVisionCfg(layers=2, width=64, patch_size=16, image_size=64),
                 CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=1, layers=2),
                 quick_gelu=True)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    n_patches = (64 // 16) ** 2
    state['visual.mask_embedding'] = 0.02 * torch.randn(MASK_PROMPT_DEPTH, n_patches, 64)
    return state


def write_tiny_clip(path, seed=0):
    """Write the tiny CLIP as safetensors (atomically); returns the path."""
    data = save({k: v.contiguous() for k, v in tiny_clip_state_dict(seed).items()})
    with atomic_write(path) as f:
        f.write(data)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', required=True)
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args(argv)
    print('tiny CLIP -> %s' % write_tiny_clip(a.out, a.seed))


if __name__ == '__main__':
    main()
