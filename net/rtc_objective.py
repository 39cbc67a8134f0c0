"""QA-CLIMS training objective: region image-text contrast with a frozen CLIP
(docs/method.md#losses), batched over all instances of a batch."""
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from net.losses import foreground_adaptive_threshold, info_nce_bg, info_nce_fg


@dataclass
class ObjectiveConfig:
    hyper: tuple = (10.0, 8.0, 0.2)     # weights of L_FRC, L_BRC, L_REG
    nce_t: float = 0.7
    fat_alpha: float = 0.1
    use_mask_clip: bool = True
    clip_input_size: int = 224
    contrastive_ref_batch: Optional[int] = None   # train_qa_clims: --clims_loss_ref_batch (4)


def contrastive_scale(images, ref_batch):
    """Factor of the contrastive sums of a process holding ``images`` images:
    ref_batch / images (1 when ``ref_batch`` is None: the plain sums).

    The reference sums L_FRC and L_BRC over the instances of its 4 images per
    process and DDP averages the gradients of its 2 processes (SyncBatchNorm:
    BatchNorm statistics over all 8 images), so its objective is
    (h0 * sum L_FRC + h1 * sum L_BRC) / 2 + h2 * L_REG over the 8 images;
    L_REG, a mean of the maps per process averaged by DDP, is the mean over
    the 8. Scaling each process's sums by 4 / images gives that gradient for
    any split of the global batch over processes; L_REG is not scaled.
    """
    return 1.0 if ref_batch is None else ref_batch / images


def batch_instances(label):
    """(image index, class index) of every positive label, row-major (n * C + c order)."""
    n, c = torch.nonzero(label > 0, as_tuple=True)
    return n, c


def clip_views(x, img, n, c, size, alpha):
    """CAM maps and images at the CLIP input size, and the FAT masks.

    cam [I, 1, S, S] and img [I, 3, S, S] are bilinear resizes with
    align_corners=True; the image is the ImageNet-normalised CAM-network input
    (a reference quirk). mask = FAT(cam) carries no gradient.
    """
    cam = F.interpolate(x[n, c][:, None], (size, size), mode='bilinear', align_corners=True)
    img_s = F.interpolate(img, (size, size), mode='bilinear', align_corners=True)[n]
    return cam, img_s, foreground_adaptive_threshold(cam, alpha)


def encode_views(clip_model, cam, img_s, mask, use_mask_clip):
    """Image features of the FG view (cam * img) and the BG view ((1 - cam) * img).

    The mask-adapted CLIP gets the binary masks M and 1 - M as mask prompts;
    plain CLIP gets the views multiplied by them. The FG and BG views of all
    instances go through the image encoder as one batch (CLIP encodes each
    image on its own: the features equal those of two calls up to float32
    rounding); the gradient reaches cam through both views.
    """
    views = torch.cat([cam * img_s, (1 - cam) * img_s])
    prompts = torch.cat([mask, 1 - mask])
    dtype = next(clip_model.parameters()).dtype
    if use_mask_clip:
        features = clip_model.encode_image(views.to(dtype), prompts.to(dtype))
    else:
        features = clip_model.encode_image((views * prompts).to(dtype))
    return features.float().split(len(cam))


def qa_clims_losses(x, img, label, image_ids, clip_model, text_bank, cfg):
    """Loss terms of one batch (this process's images): dict with L_FRC, L_BRC,
    L_REG, loss and diagnostics.

    L_FRC, L_BRC are SUMS over the instances that have BG answers; L_REG is
    the mean of every map of the batch (skipped instances included);
    loss = s * (h0 * L_FRC + h1 * L_BRC) + h2 * L_REG with
    s = :func:`contrastive_scale` (1 for the reference's batch of 4).
    """
    n, c = batch_instances(label)
    rows = text_bank.rows([image_ids[i] for i in n.tolist()], c.tolist())
    t_fg, t_bg, bg_valid, has_bg = text_bank.features(rows)
    cam, img_s, mask = clip_views(x, img, n, c, cfg.clip_input_size, cfg.fat_alpha)
    keep = torch.nonzero(has_bg).squeeze(1)
    zero = x.new_zeros(())
    l_frc = l_brc = zero
    v = u = None
    if len(keep):
        v, u = encode_views(clip_model, cam[keep], img_s[keep], mask[keep], cfg.use_mask_clip)
        l_frc = info_nce_fg(v, t_fg[keep], t_bg[keep], bg_valid[keep], cfg.nce_t).sum()
        l_brc = info_nce_bg(u, t_fg[keep], t_bg[keep], bg_valid[keep], cfg.nce_t).sum()
    l_reg = x.mean()
    scale = contrastive_scale(x.shape[0], cfg.contrastive_ref_batch)
    loss = scale * (cfg.hyper[0] * l_frc + cfg.hyper[1] * l_brc) + cfg.hyper[2] * l_reg
    return {'loss': loss, 'L_FRC': l_frc, 'L_BRC': l_brc, 'L_REG': l_reg,
            'instances': (n, c), 'skipped': ~has_bg, 'cam': cam, 'mask': mask, 'img_clip': img_s,
            'fg_features': v, 'bg_features': u}
