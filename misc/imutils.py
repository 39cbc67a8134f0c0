"""Image helpers shared by every stage: PIL resizes, augmentation, normalisation.

These reproduce the reference (IRNet ``misc/imutils.py``) arithmetic exactly:
PIL bicubic/nearest resizes on uint8 arrays, ImageNet normalisation computed
in float64 and stored as float32, random crops padded with a constant.
"""
import random

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_PIL_RESAMPLE = {3: Image.BICUBIC, 0: Image.NEAREST}


def pil_resize(img, size, order):
    """Resize an HxW[xC] uint8 array to ``size`` = (height, width) with PIL.

    ``order`` 3 is bicubic, 0 nearest. An image already at ``size`` is
    returned unchanged (the reference skips the resize too).
    """
    if size[0] == img.shape[0] and size[1] == img.shape[1]:
        return img
    return np.asarray(Image.fromarray(img).resize((size[1], size[0]), _PIL_RESAMPLE[order]))


def pil_rescale(img, scale, order):
    """Rescale by ``scale`` to (round(H*scale), round(W*scale))."""
    height, width = img.shape[:2]
    target = (int(np.round(height * scale)), int(np.round(width * scale)))
    return pil_resize(img, target, order)


def random_resize_long(img, min_long, max_long):
    """Bicubic resize so that the long side is uniform in [min_long, max_long]."""
    target_long = random.randint(min_long, max_long)
    h, w = img.shape[:2]
    scale = target_long / h if w < h else target_long / w
    return pil_rescale(img, scale, 3)


def random_lr_flip(img):
    """Horizontal flip with probability 1/2."""
    if bool(random.getrandbits(1)):
        return np.fliplr(img)
    return img


def random_crop_offsets(imgsize, cropsize):
    """The random draws of a crop window: (oy, ox), each uniform in 0..|side - cropsize|.

    On an axis where the image is larger than the crop the draw is the image
    offset, otherwise the container offset. x is drawn before y, as in the
    reference ``get_random_crop_box`` (same random stream).
    """
    h, w = imgsize
    ox = random.randrange(abs(w - cropsize) + 1)
    oy = random.randrange(abs(h - cropsize) + 1)
    return oy, ox


def crop_box(imgsize, cropsize, oy, ox):
    """Window of a square ``cropsize`` container over an image at offsets (oy, ox).

    Returns (cont_top, cont_bottom, cont_left, cont_right, img_top,
    img_bottom, img_left, img_right): ``cont[b0:b1, b2:b3] = img[b4:b5, b6:b7]``.
    An offset moves the image window on an axis where the image is larger than
    the crop, and the container window otherwise.
    """
    h, w = imgsize
    ch, cw = min(cropsize, h), min(cropsize, w)
    cont_left, img_left = (0, ox) if w > cropsize else (ox, 0)
    cont_top, img_top = (0, oy) if h > cropsize else (oy, 0)
    return (cont_top, cont_top + ch, cont_left, cont_left + cw,
            img_top, img_top + ch, img_left, img_left + cw)


def random_crop_box(imgsize, cropsize):
    """Random crop window (see :func:`crop_box`); a side shorter than the crop is
    placed at a random offset in the container."""
    return crop_box(imgsize, cropsize, *random_crop_offsets(imgsize, cropsize))


def crop_into(img, box, cropsize, fill):
    """Place the ``box`` window of ``img`` in a ``cropsize`` container filled with ``fill``."""
    cont = np.full((cropsize, cropsize) + img.shape[2:], fill, img.dtype)
    cont[box[0]:box[1], box[2]:box[3]] = img[box[4]:box[5], box[6]:box[7]]
    return cont


def random_crop(img, cropsize, fill):
    """Random ``cropsize`` x ``cropsize`` crop, padded with ``fill``."""
    return crop_into(img, random_crop_box(img.shape[:2], cropsize), cropsize, fill)


def random_crop_pair(img, label, cropsize, fills=(0, 255)):
    """The same random crop of an image and its label map."""
    box = random_crop_box(img.shape[:2], cropsize)
    return crop_into(img, box, cropsize, fills[0]), crop_into(label, box, cropsize, fills[1])


def random_scale_pair(img, label, scale_range):
    """Rescale image (bicubic) and label (nearest) by one factor uniform in
    [scale_range[0], scale_range[1]].

    As the reference ``random_scale``, only the first two values are read:
    QA-CLIMS's train_irn passes (0.5, 1.5), i.e. factors in [0.5, 1.5] (the
    (0.5, 1.0, 1.5) of IRNet's own train_irn gives [0.5, 1.0]).
    """
    scale = scale_range[0] + random.random() * (scale_range[1] - scale_range[0])
    return pil_rescale(img, scale, 3), pil_rescale(label, scale, 0)


def check_rescale_range(rescale, flag):
    """The factor range of :func:`random_scale_pair` given as ``flag`` is empty (no
    rescaling) or MIN,MAX with 0 < MIN <= MAX."""
    if rescale and (len(rescale) != 2 or not 0 < rescale[0] <= rescale[1]):
        raise ValueError('%s %s: give MIN,MAX with 0 < MIN <= MAX (the reference: '
                         '0.5,1.5; IRNet\'s (0.5, 1.0, 1.5) draws in 0.5,1.0), or "" for no '
                         'rescaling' % (flag, ','.join('%g' % v for v in rescale)))


def random_lr_flip_pair(img, label):
    """Flip image and label together with probability 1/2."""
    if bool(random.getrandbits(1)):
        return np.fliplr(img), np.fliplr(label)
    return img, label


def top_left_crop(img, cropsize, fill):
    """Deterministic crop anchored at the top-left corner, padded with ``fill``."""
    ch, cw = min(cropsize, img.shape[0]), min(cropsize, img.shape[1])
    return crop_into(img, (0, ch, 0, cw, 0, ch, 0, cw), cropsize, fill)


def imagenet_normalize(img):
    """uint8 HxWx3 -> float32 HxWx3, ``(x / 255 - mean) / std`` per channel."""
    arr = np.asarray(img)
    out = np.empty(arr.shape, np.float32)
    for c in range(3):
        out[..., c] = (arr[..., c] / 255. - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
    return out


def hwc_to_chw(img):
    return np.transpose(img, (2, 0, 1))


def scaled_network_input(img, scale):
    """float32 [3, h, w] network input of a uint8 [H, W, 3] image at ``scale``: PIL
    bicubic rescale to (round(H*s), round(W*s)) (scale 1 keeps the image), ImageNet
    normalisation, channels first (a view, not contiguous)."""
    return hwc_to_chw(imagenet_normalize(img if scale == 1 else pil_rescale(img, scale, 3)))


def strided_size(size, stride):
    """Size of a map at ``stride``: ceil(H / stride), ceil(W / stride)."""
    return (size[0] - 1) // stride + 1, (size[1] - 1) // stride + 1


def strided_up_size(size, stride):
    """Smallest multiple of ``stride`` covering (H, W)."""
    h, w = strided_size(size, stride)
    return h * stride, w * stride
