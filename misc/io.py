"""File helpers: atomic writes, reproducible ``.npz``, JSON, image reading,
and the locks that keep two runs out of one output.

Every output of a long stage goes through :func:`atomic_write`: the bytes are
written to a hidden temporary file in the destination folder, named after the
writing process (``.<name>.<pid>@<host>.partial``), and renamed over the
destination, so a killed run never leaves a half-written file and a cleanup
can tell whose temporary files are orphaned (:func:`remove_partial_files`).
"""
import contextlib
import fcntl
import io
import json
import os
import re
import socket
import time
import zipfile
import zlib

import numpy as np
from PIL import Image, UnidentifiedImageError
from safetensors.torch import save as safetensors_save

PARTIAL_SUFFIX = '.partial'
_PARTIAL_NAME = re.compile(r'^\..+\.(?P<pid>\d+)(?:@(?P<host>[^@/]+))?\.partial$')
FOREIGN_PARTIAL_MAX_AGE = 24 * 3600     # s; another host's partial file older than this is orphaned
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_END = b'\x00\x00\x00\x00IEND\xaeB`\x82'
MAX_ASPECT_RATIO = 100      # the long-side resize to 320 px still leaves >= 3 px of the short side
MIN_IMAGE_SIDE = 2          # a rescale by 0.5 still leaves >= 1 px
_HELD_LOCKS = {}            # lock path -> open descriptor holding the flock


def per_image_file(folder, image_id, suffix):
    """``<folder>/<image_id><suffix>``: the file of one image in a folder of per-image
    outputs (CAMs ``.npz``, label maps ``.png``; docs/formats.md)."""
    return os.path.join(folder, image_id + suffix)


def writer_tag():
    """``<pid>@<host>``: who writes a temporary file or holds a lock."""
    return '%d@%s' % (os.getpid(), socket.gethostname())


@contextlib.contextmanager
def atomic_write(path, mode='wb'):
    """Open a temporary sibling of ``path``; rename it over ``path`` on success."""
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, '.%s.%s%s' % (name, writer_tag(), PARTIAL_SUFFIX))
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def process_alive(pid):
    """Whether a process ``pid`` runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:         # it exists, under another user
        return True
    return True


def partial_is_orphaned(folder, name):
    """Whether the temporary file ``name`` is this process's own or its writer is gone.

    The writer is named in the file name (:func:`atomic_write`): on this host
    it is gone when no process ``pid`` runs; on another host (a shared file
    system), where that cannot be asked, when the file is older than
    FOREIGN_PARTIAL_MAX_AGE. Names without a host are of this host.
    """
    match = _PARTIAL_NAME.match(name)
    if not match:
        return False
    pid, host = int(match.group('pid')), match.group('host')
    if host is None or host == socket.gethostname():
        return pid == os.getpid() or not process_alive(pid)
    age = time.time() - os.path.getmtime(os.path.join(folder, name))
    return age > FOREIGN_PARTIAL_MAX_AGE


def remove_partial_files(folder):
    """Delete this process's temporary files in ``folder`` and those whose writer is
    gone (a killed run); another live process's are left alone. Returns the count."""
    if not os.path.isdir(folder):
        return 0
    stale = [n for n in os.listdir(folder) if n.startswith('.') and n.endswith(PARTIAL_SUFFIX)
             and partial_is_orphaned(folder, n)]
    for name in stale:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(folder, name))
    return len(stale)


def lock_path(path):
    """The lock file of an output file or folder: a hidden sibling ``.<name>.lock``."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, '.%s.lock' % name)


def claim_output(path):
    """Make this process the only writer of ``path`` (an output folder or file) until
    :func:`release_outputs` or its end; another live run holding it is an error
    naming that run. The lock is an advisory ``flock``, which the system drops
    when its holder dies, so a killed run never blocks the next one."""
    lock = lock_path(path)
    if lock in _HELD_LOCKS:
        return
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise OSError(e.errno, 'cannot create the lock file %s of %s (%s): the outputs\' '
                          'folder must be writable' % (lock, path, e.strerror)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 256).decode(errors='replace').strip() or 'unknown'
            os.close(fd)
            raise RuntimeError('%s is being written by another run (process@host %s); two runs '
                               'cannot write the same outputs: wait for that run to finish or '
                               'stop it, or give this run another --work_space'
                               % (path, owner)) from None
        if _same_file(fd, lock):        # not unlinked by a releasing holder meanwhile
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, ('%s since %s\n' % (writer_tag(), time.strftime('%Y-%m-%d %H:%M:%S'))).encode())
    _HELD_LOCKS[lock] = fd


def _same_file(fd, path):
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def release_outputs():
    """Drop every lock :func:`claim_output` took in this process (and their files)."""
    while _HELD_LOCKS:
        lock, fd = _HELD_LOCKS.popitem()
        with contextlib.suppress(FileNotFoundError):
            os.remove(lock)
        os.close(fd)


def is_complete_file(path):
    """A cheap check that an existing output can be read: the zip directory of an
    ``.npz`` (at the end of the file, so a truncated file has none), the PNG
    signature and end chunk, a JSON document; any other file is not empty."""
    try:
        if os.path.getsize(path) == 0:
            return False
        if path.endswith('.npz'):
            with zipfile.ZipFile(path) as zf:
                return bool(zf.namelist())
        if path.endswith('.png'):
            with open(path, 'rb') as f:
                head = f.read(len(_PNG_SIGNATURE))
                f.seek(-len(_PNG_END), os.SEEK_END)
                return head == _PNG_SIGNATURE and f.read() == _PNG_END
        if path.endswith('.json'):
            with open(path) as f:
                json.load(f)
        return True
    except (OSError, ValueError, zipfile.BadZipFile):
        return False


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
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise ValueError('%s is not a readable .npz file (%s): it is empty, truncated or not an '
                         '.npz; delete it and rerun the stage that writes it'
                         % (path, str(e) or type(e).__name__)) from None
    missing = [k for k in required if k not in out]
    if missing:
        raise ValueError('%s lacks the arrays %s; it was not written by this toolkit '
                         '(or by an older version): delete it and rerun' % (path, missing))
    return out


def safetensors_bytes(tensors, metadata=None):
    """A safetensors file's bytes with its metadata keys in sorted order.

    The safetensors writer emits the metadata in hash order, which changes
    from process to process; sorting makes equal inputs give equal files.
    The header keeps its length (a reordering), so the tensor offsets hold.
    """
    data = safetensors_save(tensors, metadata)
    size = int.from_bytes(data[:8], 'little')
    header = json.loads(data[8:8 + size])
    if not header.get('__metadata__'):
        return data
    header['__metadata__'] = dict(sorted(header['__metadata__'].items()))
    text = json.dumps(header, separators=(',', ':'), ensure_ascii=False).encode()
    text += b' ' * (-len(text) % 8)
    return len(text).to_bytes(8, 'little') + text + data[8 + size:]


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
            check_image_size(path, img.size)
            return np.asarray(img.convert('RGB'))
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError('image %s cannot be decoded (%s); the file is corrupt or not an '
                         'image: replace it or remove its id from the list' % (path, e)) from None


def check_image_size(path, size):
    """Refuse an image whose resizes would have a side of 0 pixels.

    ``size`` = (width, height). The pipeline's resizes (long side to 320..640
    px in training, rescales down to 0.5) need a short side of at least
    MIN_IMAGE_SIDE pixels and an aspect ratio of at most MAX_ASPECT_RATIO.
    """
    short, long = min(size), max(size)
    if short < MIN_IMAGE_SIDE or long > MAX_ASPECT_RATIO * short:
        raise ValueError('image %s is %d x %d pixels: the pipeline needs a short side of at '
                         'least %d pixels and an aspect ratio of at most %d (its resizes would '
                         'leave a side of 0 pixels); crop or pad the image, or remove its id from '
                         'the list' % (path, size[0], size[1], MIN_IMAGE_SIDE, MAX_ASPECT_RATIO))


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
        raise ValueError('mask %s cannot be read as a class-id PNG (%s): if a stage wrote it '
                         '(confident regions, pseudo masks, predictions), delete it and rerun that '
                         'stage; if it is a ground-truth mask, restore it from the dataset'
                         % (path, e)) from None
