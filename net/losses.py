"""QA-CLIMS region image-text contrastive losses and FAT (docs/method.md#losses,
docs/method.md#fat-masks).

Batched over instances: instance i has an image feature, one FG text feature
t_i [D] and a variable number L_i >= 1 of BG text features, given padded to
[N, L_max, D] with a boolean validity mask [N, L_max].
"""
import math

import torch


def foreground_adaptive_threshold(cams, alpha=0.1):
    """FAT: binary mask ``cam >= alpha * max(cam)`` per map [N, 1, H, W], no gradient.

    ``>=`` as the reference: an all-zero map gives an all-ones mask.
    """
    with torch.no_grad():
        peak = cams.flatten(1).max(dim=1).values.view(-1, *([1] * (cams.dim() - 1)))
        return (cams >= peak * alpha).to(cams.dtype)


def _similarities(img_features, fg_text, bg_text, temperature):
    """Scaled cosine logits of the normalised image features: (fg [N], bg [N, L])."""
    v = img_features / img_features.norm(dim=-1, keepdim=True)
    fg = (v * fg_text).sum(-1) / temperature
    bg = torch.einsum('nd,nld->nl', v, bg_text) / temperature
    return fg, bg


def info_nce_fg(img_features, fg_text, bg_text, bg_valid, temperature=0.7):
    """L_fg per instance: -log(e(v.t) / (e(v.t) + sum_j e(v.T_j))).

    Text features are used as given (the FG feature is not re-normalised).
    """
    fg, bg = _similarities(img_features, fg_text, bg_text, temperature)
    bg = bg.masked_fill(~bg_valid, -math.inf)
    return torch.logsumexp(torch.cat([fg[:, None], bg], 1), dim=1) - fg


def info_nce_bg(img_features, fg_text, bg_text, bg_valid, temperature=0.7):
    """L_bg per instance: -log(mean_j e(u.T_j) / (mean_j e(u.T_j) + e(u.t)))."""
    fg, bg = _similarities(img_features, fg_text, bg_text, temperature)
    bg = bg.masked_fill(~bg_valid, -math.inf)
    log_mean = torch.logsumexp(bg, dim=1) - bg_valid.sum(1).to(bg.dtype).log()
    return torch.logsumexp(torch.stack([log_mean, fg], 1), dim=1) - log_mean
