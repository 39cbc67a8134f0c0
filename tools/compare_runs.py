"""Compare two output folders of the demo (``run_demo.py --out``) file by file.

    python tools/compare_runs.py RUN_A RUN_B [--skip GLOB ...]

Every file under either folder is compared with the file of the same
relative path in the other (docs/extending.md#checking-that-outputs-stay-the-same):

* JSON files as parsed values, after dropping timing fields (keys such as
  ``seconds``, ``elapsed_time``), writing the run folder's absolute path as
  ``<run>`` in every string and a sha256 of a file of the run (provenance
  records hold them) as ``<sha256 of RELATIVE PATH>``: such a file may hold
  the run's path itself, and it is compared on its own;
* safetensors files by their tensors (names, dtypes, shapes, values) and
  metadata, the run folder written as ``<run>`` in the metadata;
* any other file byte for byte.

Files matching a ``--skip`` glob (default: ``*.log`` and ``.*.lock``, the
logs and the output locks, which hold clock times and process ids) are
listed as skipped. Prints each differing or missing file
and a summary; the last line is ``IDENTICAL`` (exit 0) or ``DIFFERENT``
(exit 1).
"""
import argparse
import fnmatch
import hashlib
import json
import os
import re
import sys

import torch
from safetensors import safe_open

TIMING_KEY = re.compile(r'(^|_)(seconds|secs|elapsed|duration|time|timestamp|started|finished)'
                        r'($|_)')
RUN_PLACEHOLDER = '<run>'
SKIP = ('*.log', '.*.lock')


def run_files(root, skip):
    """(compared, skipped): the relative paths of the files under ``root``, sorted."""
    compared, skipped = [], []
    for folder, _, names in os.walk(root):
        for name in names:
            rel = os.path.relpath(os.path.join(folder, name), root)
            (skipped if any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(name, g) for g in skip)
             else compared).append(rel)
    return sorted(compared), sorted(skipped)


def run_prefixes(root):
    """The spellings of the run folder's absolute path, longest first."""
    return sorted({os.path.abspath(root), os.path.realpath(root)}, key=len, reverse=True)


def without_run_folder(text, root):
    for prefix in run_prefixes(root):
        text = text.replace(prefix, RUN_PLACEHOLDER)
    return text


def file_hashes(root, files):
    """{sha256 hex digest: '<sha256 of REL>'} of the files ``files`` under ``root``."""
    hashes = {}
    for rel in files:
        digest = hashlib.sha256()
        with open(os.path.join(root, rel), 'rb') as f:
            for chunk in iter(lambda: f.read(1 << 20), b''):
                digest.update(chunk)
        hashes[digest.hexdigest()] = '<sha256 of %s>' % rel
    return hashes


def normalised_json(value, root, hashes=None):
    """``value`` without timing fields, with the run folder written as ``<run>`` and
    the digests of ``hashes`` (:func:`file_hashes`) as the files they hash."""
    if isinstance(value, dict):
        return {k: normalised_json(v, root, hashes) for k, v in value.items()
                if not TIMING_KEY.search(k)}
    if isinstance(value, list):
        return [normalised_json(v, root, hashes) for v in value]
    if isinstance(value, str):
        return (hashes or {}).get(value) or without_run_folder(value, root)
    return value


def read_safetensors(path, root):
    """(metadata with the run folder normalised, {name: tensor})."""
    with safe_open(path, framework='pt') as f:
        metadata = {k: without_run_folder(v, root) for k, v in (f.metadata() or {}).items()}
        return metadata, {k: f.get_tensor(k) for k in f.keys()}


def safetensors_difference(path_a, root_a, path_b, root_b):
    """None when both files hold the same tensors and metadata, else what differs."""
    meta_a, tensors_a = read_safetensors(path_a, root_a)
    meta_b, tensors_b = read_safetensors(path_b, root_b)
    if meta_a != meta_b:
        keys = sorted(k for k in set(meta_a) | set(meta_b) if meta_a.get(k) != meta_b.get(k))
        return 'metadata differs: %s' % ', '.join(keys)
    if sorted(tensors_a) != sorted(tensors_b):
        return 'tensor names differ'
    changed = [k for k in sorted(tensors_a) if tensors_a[k].dtype != tensors_b[k].dtype
               or not torch.equal(tensors_a[k], tensors_b[k])]
    if changed:
        return '%d of %d tensors differ (first: %s)' % (len(changed), len(tensors_a), changed[0])
    return None


def json_difference(path_a, root_a, path_b, root_b, hashes_a=None, hashes_b=None):
    with open(path_a, encoding='utf-8') as fa, open(path_b, encoding='utf-8') as fb:
        a, b = json.load(fa), json.load(fb)
    if normalised_json(a, root_a, hashes_a) == normalised_json(b, root_b, hashes_b):
        return None
    return 'JSON values differ'


def bytes_difference(path_a, path_b):
    if os.path.getsize(path_a) != os.path.getsize(path_b):
        return 'sizes differ (%d, %d bytes)' % (os.path.getsize(path_a), os.path.getsize(path_b))
    with open(path_a, 'rb') as fa, open(path_b, 'rb') as fb:
        offset = 0
        while True:
            a, b = fa.read(1 << 20), fb.read(1 << 20)
            if a != b:
                first = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
                return 'bytes differ from offset %d' % (offset + first)
            if not a:
                return None
            offset += len(a)


def file_difference(rel, root_a, root_b, hashes_a=None, hashes_b=None):
    """None when the file ``rel`` is the same in both runs, else a short reason."""
    path_a, path_b = os.path.join(root_a, rel), os.path.join(root_b, rel)
    if rel.endswith('.json'):
        try:
            return json_difference(path_a, root_a, path_b, root_b, hashes_a, hashes_b)
        except ValueError:
            return bytes_difference(path_a, path_b)
    if rel.endswith('.safetensors'):
        return safetensors_difference(path_a, root_a, path_b, root_b)
    return bytes_difference(path_a, path_b)


def compare_runs(root_a, root_b, skip=SKIP):
    """{'identical': [rel], 'different': [(rel, reason)], 'only_a': [rel], 'only_b': [rel],
    'skipped': [rel]} of the two run folders."""
    files_a, skipped_a = run_files(root_a, skip)
    files_b, skipped_b = run_files(root_b, skip)
    result = {'identical': [], 'different': [],
              'only_a': sorted(set(files_a) - set(files_b)),
              'only_b': sorted(set(files_b) - set(files_a)),
              'skipped': sorted(set(skipped_a) | set(skipped_b))}
    hashed = [rel for rel in set(files_a) & set(files_b) if not rel.endswith('.json')]
    hashes_a, hashes_b = file_hashes(root_a, hashed), file_hashes(root_b, hashed)
    for rel in sorted(set(files_a) & set(files_b)):
        reason = file_difference(rel, root_a, root_b, hashes_a, hashes_b)
        if reason is None:
            result['identical'].append(rel)
        else:
            result['different'].append((rel, reason))
    return result


def report(result, root_a, root_b):
    """The printed report; its last line is IDENTICAL or DIFFERENT."""
    lines = ['differs: %s (%s)' % item for item in result['different']]
    lines += ['only in %s: %s' % (root_a, rel) for rel in result['only_a']]
    lines += ['only in %s: %s' % (root_b, rel) for rel in result['only_b']]
    skipped = result['skipped']
    lines.append('%d identical, %d different, %d only in %s, %d only in %s, %d skipped%s'
                 % (len(result['identical']), len(result['different']), len(result['only_a']),
                    root_a, len(result['only_b']), root_b, len(skipped),
                    ' (%s%s)' % (', '.join(skipped[:3]), ', ...' if len(skipped) > 3 else '')
                    if skipped else ''))
    same = not (result['different'] or result['only_a'] or result['only_b'])
    lines.append('IDENTICAL' if same else 'DIFFERENT')
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('run_a')
    p.add_argument('run_b')
    p.add_argument('--skip', nargs='*', default=list(SKIP), metavar='GLOB',
                   help='relative paths or file names not compared (default: %s)'
                   % ' '.join(SKIP))
    args = p.parse_args(argv)
    for root in (args.run_a, args.run_b):
        if not os.path.isdir(root):
            p.error('%s is not a folder: give two output folders of run_demo.py --out' % root)
    lines = report(compare_runs(args.run_a, args.run_b, args.skip), args.run_a, args.run_b)
    print('\n'.join(lines))
    return 0 if lines[-1] == 'IDENTICAL' else 1


if __name__ == '__main__':
    sys.exit(main())
