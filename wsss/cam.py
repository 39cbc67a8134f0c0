"""CAM post-processing shared by make_cam/make_clims, and the CAM files every
later stage reads (:class:`CamFiles`)."""
import os
import pickle

import numpy as np
import torch
import torch.nn.functional as F

from misc.imutils import strided_size, strided_up_size
from misc.io import load_npz, per_image_file

CAM_STRIDE = 4
CAM_SUFFIX = '.npz'
REFERENCE_CAM_SUFFIX = '.npy'
CAM_ARRAYS = ('keys', 'cam', 'high_res')
CAM_DTYPES = {'keys': np.int64, 'cam': np.float32, 'high_res': np.float32}


def normalize_cams(cams, eps=1e-5):
    """Divide each map [K, h, w] by its own max + eps (an all-zero map stays 0)."""
    return cams / (F.adaptive_max_pool2d(cams, (1, 1)) + eps)


def fuse_multiscale(outputs, size, network_stride):
    """Sum the per-scale maps at stride 4 and at full resolution (docs/method.md#multi-scale-cams).

    ``outputs``: list of [C, h_s, w_s] maps, one per scale. Returns
    (strided [C, ceil(H/4), ceil(W/4)], high_res [C, H, W]); the high-res
    maps are resized to the ``network_stride`` cover of (H, W) (the
    reference: 16, ResNet-50's) and cropped.
    """
    strided = strided_size(size, CAM_STRIDE)
    up = strided_up_size(size, network_stride)
    strided_cam = torch.stack([F.interpolate(o[None], strided, mode='bilinear',
                                             align_corners=False)[0] for o in outputs]).sum(0)
    high_res = torch.stack([F.interpolate(o[:, None], up, mode='bilinear',
                                          align_corners=False) for o in outputs]).sum(0)
    return strided_cam, high_res[:, 0, :size[0], :size[1]]


def present_class_cams(outputs, size, label, network_stride):
    """Maps of the classes in ``label`` (multi-hot), fused over scales and normalised.

    ``outputs`` and ``network_stride``: as :func:`fuse_multiscale`.
    The tagged classes are taken before fusing (every resize is per map, so
    the maps equal those of fusing all C classes, at K / C of the cost); each
    map is then divided by its max + 1e-5.
    Returns numpy (keys int64 [K], cam float32 [K, h, w], high_res float32 [K, H, W]).
    """
    keys = torch.nonzero(label)[:, 0]
    strided, high_res = fuse_multiscale([o[keys] for o in outputs], size, network_stride)
    return (keys.numpy().astype(np.int64), normalize_cams(strided).numpy(),
            normalize_cams(high_res).numpy())


class CamFiles:
    """The per-image CAM files of a folder, read the same way by every later stage.

    Ours are ``<id>.npz`` (``keys`` int64, ``cam`` and ``high_res`` float32;
    no pickles). With ``import_reference`` the folder holds the authors'
    ``<id>.npy`` instead: ``np.save`` of the dict ``{"keys": torch.LongTensor,
    "cam": torch.FloatTensor, "high_res": ndarray}``. Those files are pickles
    and unpickling runs code stored in the file, so they are read only when
    the user asks for it (``--import_reference_cams True``), for files from a
    trusted source. Either way :meth:`load` returns the same numpy arrays.
    """

    def __init__(self, folder, import_reference=False):
        self.folder = folder
        self.import_reference = import_reference
        self.suffix = REFERENCE_CAM_SUFFIX if import_reference else CAM_SUFFIX

    def path(self, image_id):
        return per_image_file(self.folder, image_id, self.suffix)

    def require(self, ids, list_name):
        """Fail before any work, with the count and the first id, if CAM files are missing."""
        missing = [i for i in ids if not os.path.isfile(self.path(i))]
        if not missing:
            return
        if not self.import_reference and os.path.isfile(
                os.path.join(self.folder, missing[0] + REFERENCE_CAM_SUFFIX)):
            raise ValueError('%s holds CAMs in the authors\' pickled .npy format (%s%s): pass '
                             '--import_reference_cams True to read them (importing a pickle runs '
                             'code from the file: only for files from a trusted source)'
                             % (self.folder, missing[0], REFERENCE_CAM_SUFFIX))
        raise FileNotFoundError('%d of %d CAM files of %s are missing in %s (first: %s%s); run '
                                'make_cam / make_clims on this list first'
                                % (len(missing), len(ids), list_name, self.folder, missing[0],
                                   self.suffix))

    def load(self, image_id, required=CAM_ARRAYS):
        """{'keys': int64 [K], 'cam': float32 [K, h, w], 'high_res': float32 [K, H, W]} (``required`` checked)."""
        path = self.path(image_id)
        if self.import_reference:
            return load_reference_cams(path, required)
        return load_npz(path, required=required)


def load_reference_cams(path, required=CAM_ARRAYS):
    """The arrays of one authors' CAM ``.npy`` (a pickled dict: trusted files only)."""
    try:
        record = np.load(path, allow_pickle=True).item()
    except FileNotFoundError:
        raise FileNotFoundError('%s does not exist' % path) from None
    except (ValueError, OSError, EOFError, pickle.UnpicklingError, AttributeError,
            ImportError, RuntimeError) as e:
        raise ValueError('%s is not a readable CAM .npy of the reference (%s): it is empty, '
                         'truncated or not such a file; export it again from the authors\' '
                         'make_cam' % (path, str(e) or type(e).__name__)) from None
    if not isinstance(record, dict):
        raise ValueError('%s holds a %s, not the reference CAM dict {keys, cam, high_res}'
                         % (path, type(record).__name__))
    missing = [k for k in required if k not in record]
    if missing:
        raise ValueError('%s lacks %s; the reference CAM dict has keys, cam and high_res'
                         % (path, missing))
    return {name: np.asarray(_as_numpy(value), dtype=CAM_DTYPES[name])
            for name, value in record.items() if name in CAM_DTYPES}


def _as_numpy(value):
    return value.numpy() if isinstance(value, torch.Tensor) else value
