"""CAM post-processing shared by make_cam/make_clims and later stages."""
import numpy as np
import torch
import torch.nn.functional as F

from misc.imutils import strided_size, strided_up_size

CAM_STRIDE = 4
NETWORK_STRIDE = 16


def normalize_cams(cams, eps=1e-5):
    """Divide each map [K, h, w] by its own max + eps (an all-zero map stays 0)."""
    return cams / (F.adaptive_max_pool2d(cams, (1, 1)) + eps)


def fuse_multiscale(outputs, size):
    """Sum the per-scale maps at stride 4 and at full resolution (METHOD.md stage 5).

    ``outputs``: list of [C, h_s, w_s] maps, one per scale. Returns
    (strided [C, ceil(H/4), ceil(W/4)], high_res [C, H, W]); the high-res
    maps are resized to the stride-16 cover of (H, W) and cropped.
    """
    strided = strided_size(size, CAM_STRIDE)
    up = strided_up_size(size, NETWORK_STRIDE)
    strided_cam = torch.stack([F.interpolate(o[None], strided, mode='bilinear',
                                             align_corners=False)[0] for o in outputs]).sum(0)
    high_res = torch.stack([F.interpolate(o[:, None], up, mode='bilinear',
                                          align_corners=False) for o in outputs]).sum(0)
    return strided_cam, high_res[:, 0, :size[0], :size[1]]


def present_class_cams(strided_cam, high_res, label):
    """Keep the maps of the classes in ``label`` (multi-hot) and normalise them.

    Returns numpy (keys int64 [K], cam float32 [K, h, w], high_res float32 [K, H, W]).
    """
    keys = torch.nonzero(label)[:, 0]
    cam = normalize_cams(strided_cam[keys])
    hr = normalize_cams(high_res[keys])
    return keys.numpy().astype(np.int64), cam.numpy(), hr.numpy()
