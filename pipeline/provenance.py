"""What every output was made from, and whether an existing one can be reused.

A record is a small JSON dict::

    {"stage": "cam_to_ir_label",
     "settings": {flag: value, ...},          # the flags that change the result
     "files": {flag: sha256 or null, ...},    # weights (and data files) read
     "upstream": {name: record or null, ...}} # records of the outputs consumed

It is written atomically beside the outputs: ``<out_dir>.provenance.json``
for a folder of per-image outputs (written before the first output, so every
output in the folder was made under it), ``<weights>.provenance.json`` for
trained weights (with the weights' own sha256, so a record that no longer
describes its file is ignored) and ``<train_state>.provenance.json`` for a
resumable training state. Upstream records nest, so a record holds the whole
lineage of its outputs; ``null`` stands for an input without a record (the
authors' weights or CAMs, ground truth).

On a rerun the stage compares the recorded and the current record: outputs
of the same record are reused, others are removed and redone with the
differences logged, or, with ``--overwrite False``, the stage refuses and
names them. Outputs without any record (made by an older version, or copied
in) cannot be checked: they are kept, with a warning, and the current record
is written for them.
"""
import hashlib
import json
import os

from misc import dist
from misc.io import claim_output, load_json, save_json
from misc.logutil import get_logger

RECORD_SUFFIX = '.provenance.json'

# The flags that change each stage's result (outputs, trained weights, numbers).
RESULT_FLAGS = {
    'make_cam': ('dataset', 'cam_scales', 'amp'),
    'make_clims': ('dataset', 'cam_scales', 'amp'),
    'eval_cam': ('dataset', 'chainer_eval_set', 'coco_protocol', 'cam_eval_thres',
                 'eval_cam_best', 'import_reference_cams'),
    'cam_to_ir_label': ('dataset', 'conf_fg_thres', 'conf_bg_thres', 'import_reference_cams'),
    'make_sem_seg': ('dataset', 'beta', 'exp_times', 'sem_seg_bg_thres', 'import_reference_cams'),
    'eval_sem_seg': ('dataset', 'chainer_eval_set', 'coco_protocol'),
    'eval_seg': ('dataset', 'seg_arch', 'seg_msc', 'seg_eval_scales', 'seg_eval_flip', 'seg_crf',
                 'amp'),
    'train_cam': ('dataset', 'cam_batch_size', 'cam_num_epoches', 'cam_learning_rate',
                  'cam_weight_decay', 'cam_crop_size', 'cam_resize_long',
                  'cam_detach_early_stages', 'fix_momentum_quirk', 'seed', 'amp'),
    'train_qa_clims': ('dataset', 'clims_batch_size', 'clims_num_epoches', 'clims_learning_rate',
                       'clims_loss_ref_batch', 'hyper', 'nce_t', 'mask_adapter_alpha',
                       'use_mask_clip', 'clip_dtype', 'clims_weight_decay', 'clims_crop_size',
                       'clims_resize_long', 'fix_momentum_quirk', 'seed', 'amp'),
    'train_irn': ('dataset', 'irn_batch_size', 'irn_num_epoches', 'irn_learning_rate',
                  'irn_weight_decay', 'irn_crop_size', 'irn_rescale', 'fix_momentum_quirk', 'seed',
                  'amp'),
    'train_seg': ('dataset', 'seg_arch', 'seg_label_dir', 'seg_batch_size', 'seg_crop_size',
                  'seg_scales', 'seg_num_iters', 'seg_learning_rate', 'seg_weight_decay',
                  'seg_msc', 'seg_iter_size', 'seg_lr_decay_every', 'seg_grad_clip', 'seed',
                  'amp'),
}

# Settings renamed since records were first written: {stage: {old name: new name}}.
# train_qa_clims read train_cam's flags before it had its own (docs/recipe.md).
SETTING_RENAMES = {
    'train_qa_clims': {'cam_weight_decay': 'clims_weight_decay',
                       'cam_crop_size': 'clims_crop_size',
                       'cam_resize_long': 'clims_resize_long'},
}

_SHA256_CACHE = {}


def file_sha256(path):
    """sha256 of a file's bytes (None for no file), computed once per (path, size, mtime)."""
    if path is None:
        return None
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA256_CACHE:
        digest = hashlib.sha256()
        with open(path, 'rb') as f:
            for chunk in iter(lambda: f.read(1 << 24), b''):
                digest.update(chunk)
        _SHA256_CACHE[key] = digest.hexdigest()
    return _SHA256_CACHE[key]


def list_sha256(ids, source=None):
    """sha256 of an image list in its order (with each image's class ids when ``source``
    is given: the list and its image-level labels in one digest)."""
    lines = ids if source is None else ['%s %s' % (i, list(source.image_label_ids(i)))
                                        for i in ids]
    return hashlib.sha256('\n'.join(lines).encode()).hexdigest()


def stage_record(stage, args, lists=None, files=None, upstream=None):
    """The record of ``stage`` run with ``args``: its RESULT_FLAGS, ``lists`` ({name:
    digest}) among the settings, the sha256 of ``files`` ({flag: path or None}) and the
    ``upstream`` records ({name: record or None})."""
    settings = {flag: getattr(args, flag) for flag in RESULT_FLAGS[stage]}
    settings.update(lists or {})
    record = {'stage': stage, 'settings': settings,
              'files': {flag: file_sha256(path) for flag, path in (files or {}).items()},
              'upstream': dict(upstream or {})}
    return json.loads(json.dumps(record))


def current_names(record):
    """``record`` (and the records upstream of it) with the settings of
    :data:`SETTING_RENAMES` under their current names, so that a record written
    before a rename still matches a run with the same values."""
    if not isinstance(record, dict) or 'stage' not in record:
        return record
    renames = SETTING_RENAMES.get(record['stage'], {})
    out = dict(record)
    if isinstance(record.get('settings'), dict):
        out['settings'] = {renames.get(name, name): value
                           for name, value in record['settings'].items()}
    if isinstance(record.get('upstream'), dict):
        out['upstream'] = {name: current_names(up) for name, up in record['upstream'].items()}
    return out


def read_record(path):
    """The record saved at ``path`` (None when there is none), in current names."""
    return current_names(load_json(path)) if os.path.isfile(path) else None


def folder_record(folder):
    """The record of a folder of per-image outputs (None when it has none)."""
    return read_record(folder_record_path(folder))


def cams_record(cam_files):
    """The record of the CAMs a stage reads (:class:`wsss.cam.CamFiles`); the authors'
    imported ``.npy`` CAMs have none."""
    return None if cam_files.import_reference else folder_record(cam_files.folder)


def folder_record_path(folder):
    """``<folder>.provenance.json``: beside the folder, not among its outputs."""
    return os.path.normpath(folder) + RECORD_SUFFIX


def weights_record(path):
    """The record of a weights file, if it has one that describes this very file."""
    record_path = path + RECORD_SUFFIX
    if not os.path.isfile(record_path) or not os.path.isfile(path):
        return None
    record = read_record(record_path)
    if record.get('sha256') != file_sha256(path):
        get_logger().warning('WARNING: %s describes other weights than %s (rewritten since): '
                             'ignored', record_path, path)
        return None
    return record


def write_weights_record(path, record):
    """The main process records what the weights at ``path`` were trained from."""
    if dist.is_main_process():
        save_json(path + RECORD_SUFFIX, dict(record, sha256=file_sha256(path)))
    dist.barrier()


def differences(old, new, where=''):
    """'where: old -> new' for every leaf that differs between two records."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += differences(old.get(key), new.get(key), where + '/' + str(key) if where
                               else str(key))
        return out
    if old == new:
        return []
    return ['%s: %s -> %s' % (where, _short(old), _short(new))]


def _short(value):
    if value is None:
        return 'none'
    if isinstance(value, dict):
        return 'a record' if 'stage' in value else '{...}'
    if isinstance(value, str) and len(value) == 64:
        return value[:12]
    return json.dumps(value)


def describe(old, new, limit=6):
    """The differences between a recorded and the current record, for a message."""
    diffs = differences(old, new)
    more = ' and %d more' % (len(diffs) - limit) if len(diffs) > limit else ''
    return '; '.join(diffs[:limit]) + more


def lineage(record):
    """{stage: {'settings', 'files', 'unrecorded'}} of a record and of every record
    upstream of it: which weights (sha256) and settings produced a result
    ('unrecorded' names the inputs that have no record)."""
    out = {}
    upstream = record['upstream']
    for name in sorted(upstream):
        if upstream[name]:
            out.update(lineage(upstream[name]))
    out[record['stage']] = {'settings': record['settings'], 'files': record['files'],
                            'unrecorded': sorted(n for n in upstream if not upstream[n])}
    return out


def _outputs(folders, suffix):
    """Paths of the output files (name ending in ``suffix``) in ``folders``."""
    return [os.path.join(folder, name) for folder in folders if os.path.isdir(folder)
            for name in sorted(os.listdir(folder)) if name.endswith(suffix)]


def claim_outputs(record, folders, suffix, overwrite):
    """Make ``folders`` (the first one's record covers them all) hold only outputs of
    ``record``.

    Outputs made under another record are removed, with the differences
    logged, before the record is written; with ``overwrite`` False every
    process refuses instead. Outputs without a record are kept (see the
    module's docstring). The main process first claims the folders (another
    live run writing them is an error, :func:`misc.io.claim_output`). Call on
    every process.
    """
    if dist.is_main_process():
        os.makedirs(folders[0], exist_ok=True)
        for folder in folders:
            claim_output(folder)
    recorded = folder_record(folders[0])
    existing = _outputs(folders, suffix) if recorded != record else []
    stale = existing if recorded is not None else []
    where = ', '.join(sorted(set(os.path.dirname(p) for p in existing)))
    if stale and not overwrite:
        raise ValueError('%s: %d files in %s were made from other inputs than this run\'s (%s); '
                         'with --overwrite False they are kept and the stage stops: rerun with '
                         'the same inputs, choose another output folder, or pass --overwrite '
                         'True to redo them' % (record['stage'], len(stale), where,
                                                describe(recorded, record)))
    dist.barrier()                  # every process has read the old record
    if dist.is_main_process():
        log = get_logger()
        if stale:
            log.warning('%s: %d files in %s were made with other weights or settings: removed '
                        '(%s)', record['stage'], len(stale), where, describe(recorded, record))
            for path in stale:
                os.remove(path)
        elif existing:
            log.warning('WARNING: %s: %d files in %s have no provenance record (made by an older '
                        'version or copied in): kept as outputs of this run\'s inputs; delete '
                        'them to redo them', record['stage'], len(existing), where)
        if recorded != record:
            save_json(folder_record_path(folders[0]), record)
    dist.barrier()


def claim_train_state(state_path, record, overwrite):
    """Resume the training state at ``state_path`` only if it was trained from ``record``.

    A state of another record is deleted, with the differences logged, so
    that training starts over; with ``overwrite`` False every process refuses
    instead. A state without a record is resumed with a warning. The record
    is written before any new state. The main process first claims the state
    (:func:`misc.io.claim_output`). Call on every process, before loading the
    state.
    """
    if dist.is_main_process():
        claim_output(state_path)
    record_path = state_path + RECORD_SUFFIX
    recorded = read_record(record_path)
    exists = os.path.isfile(state_path)
    mismatch = exists and recorded is not None and recorded != record
    if mismatch and not overwrite:
        raise ValueError('%s: the training state %s was trained from other inputs than this '
                         'run\'s (%s); with --overwrite False it is not resumed and the stage '
                         'stops: rerun with the same inputs, or pass --overwrite True (or delete '
                         'it) to start over' % (record['stage'], state_path,
                                               describe(recorded, record)))
    dist.barrier()                  # every process has read the old record
    if dist.is_main_process():
        log = get_logger()
        if mismatch:
            log.warning('%s: not resuming %s, it was trained from other inputs (%s): starting '
                        'over', record['stage'], state_path, describe(recorded, record))
            os.remove(state_path)
        elif exists and recorded is None:
            log.warning('WARNING: %s: the training state %s has no provenance record (saved by '
                        'an older version): resumed as a state of this run\'s inputs; delete it '
                        'to start over', record['stage'], state_path)
        if recorded != record:
            save_json(record_path, record)
    dist.barrier()
