"""File helpers: atomic writes, reproducible ``.npz``, JSON, image reading.

Every output of a long stage goes through :func:`atomic_write`: the bytes are
written to a hidden temporary file in the destination folder and renamed
over the destination, so a killed run never leaves a half-written file.
"""
import contextlib
import io
import json
import os
import zipfile

import numpy as np
from PIL import Image, UnidentifiedImageError

PARTIAL_SUFFIX = '.partial'
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@contextlib.contextmanager
def atomic_write(path, mode='wb'):
    """Open a temporary sibling of ``path``; rename it over ``path`` on success."""
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, '.%s.%d%s' % (name, os.getpid(), PARTIAL_SUFFIX))
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def remove_partial_files(folder):
    """Delete temporary files a killed run left behind in ``folder``."""
    if not os.path.isdir(folder):
        return 0
    stale = [n for n in os.listdir(folder) if n.startswith('.') and n.endswith(PARTIAL_SUFFIX)]
    for name in stale:
        os.remove(os.path.join(folder, name))
    return len(stale)


def npz_bytes(arrays):
    """Serialise arrays as an ``.npz`` (zip of ``.npy``) with fixed timestamps.

    ``numpy.savez`` stamps members with the current time; fixed stamps make
    the same arrays give the same bytes, so a resumed run is byte-identical.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w', compression=zipfile.ZIP_DEFLATED) as zf:
        for key, value in arrays.items():
            arr = np.ascontiguousarray(value)
            if arr.dtype == object:
                raise TypeError('refusing to store object array %r (would need pickle)' % key)
            member = io.BytesIO()
            np.lib.format.write_array(member, arr, allow_pickle=False)
            info = zipfile.ZipInfo(key + '.npy', date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def save_npz(path, **arrays):
    """Atomically write a reproducible ``.npz``."""
    data = npz_bytes(arrays)
    with atomic_write(path) as f:
        f.write(data)


def load_npz(path, required=()):
    """Load an ``.npz`` without pickles; a clear error names a bad file."""
    try:
        with np.load(path, allow_pickle=False) as d:
            out = {k: d[k] for k in d.files}
    except FileNotFoundError:
        raise FileNotFoundError('%s does not exist' % path) from None
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        raise ValueError('%s is not a readable .npz file (%s); delete it and rerun the stage '
                         'that writes it' % (path, e)) from None
    missing = [k for k in required if k not in out]
    if missing:
        raise ValueError('%s lacks the arrays %s; it was not written by this toolkit '
                         '(or by an older version): delete it and rerun' % (path, missing))
    return out


def save_json(path, obj):
    """Atomically write JSON (NaN written as null)."""
    text = json.dumps(_nan_to_none(obj), indent=1)
    with atomic_write(path, 'w') as f:
        f.write(text + '\n')


def load_json(path):
    """A JSON file, with a clear error when it is unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError('%s does not exist' % path) from None
    except json.JSONDecodeError as e:
        raise ValueError('%s is not valid JSON (%s); delete it and rerun' % (path, e)) from None


def _nan_to_none(obj):
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _nan_to_none(obj.tolist())
    if isinstance(obj, np.generic):
        return _nan_to_none(obj.item())
    return obj


def save_png(path, array, palette=None):
    """Atomically write a uint8 array as PNG ('P' mode when a palette is given)."""
    img = Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8))
    if palette is not None:
        img = img.convert('P') if img.mode != 'P' else img
        img.putpalette(palette)
    buf = io.BytesIO()
    img.save(buf, format='PNG')
    with atomic_write(path) as f:
        f.write(buf.getvalue())


def read_rgb(path):
    """uint8 HxWx3 RGB array of an image file, with a clear error if unreadable."""
    if not os.path.isfile(path):
        raise FileNotFoundError('image %s does not exist (listed in the split but missing '
                                'from the dataset folder)' % path)
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert('RGB'))
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError('image %s cannot be decoded (%s); the file is corrupt or not an '
                         'image: replace it or remove its id from the list' % (path, e)) from None


def read_label_png(path):
    """uint8 HxW class-id array of a (palette or grayscale) mask PNG."""
    if not os.path.isfile(path):
        raise FileNotFoundError('mask %s does not exist' % path)
    try:
        with Image.open(path) as img:
            if img.mode not in ('P', 'L'):
                raise ValueError('mode %s; expected a palette (P) or grayscale (L) PNG' % img.mode)
            return np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ValueError('mask %s cannot be read as a class-id PNG (%s)' % (path, e)) from None
