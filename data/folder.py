"""Your own data: a folder of images with image-level labels
(``--dataset folder --data_root DIR``).

Layout of ``DIR``:

* ``images/``: the images (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``, ``.tif``,
  ``.tiff``, ``.webp``); the image id is the file name without its extension;
* ``classes.txt``: one class per line, in class-id order (the first line is
  class 0 of the label vectors and id 1 of the masks: background is implicit,
  id 0). ``name: alias, alias`` adds aliases: an FG answer of the VQA that
  contains the name or one of its aliases is prompted as it is, any other
  gets the name appended (the reference's ``supply_cat``, e.g.
  ``dining table: table``). Blank lines and lines starting with ``#`` are
  skipped. The names are what the VQA asks about and CLIP encodes;
* ``labels.csv`` (header ``image,labels``; labels separated by ``;`` or ``|``)
  or ``labels.json`` (``{"<id>": ["<class>", ...]}``): the classes of each
  image, by name. ``image`` is the id or the file name;
* ``splits/<name>.txt`` (optional): one id per line. ``train`` is every
  labelled image unless ``splits/train.txt`` exists;
* ``masks/<id>.png`` (optional): palette or grayscale PNG of class ids
  (0 background, 1.. the classes, 255 ignored), used only for scoring.

Everything is checked before any stage writes anything (classes and labels
when the folder is opened, a split list when it is read): an unknown class,
a labelled image missing from ``images/``, a duplicate id, an empty label set
or a split line naming an unlabelled image is an error listing every such
file and line; a class that no image has is a warning. A mask with ids
outside the classes is an error naming the file when it is read.
"""
import csv
import json
import os
import re

import numpy as np

from data.base import SegmentationSource
from data.registry import DATASETS
from misc.io import atomic_write, read_label_png
from misc.logutil import get_logger
from misc.palette import MAX_LABELS

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
LABEL_FILES = ('labels.csv', 'labels.json')
CSV_HEADER = ['image', 'labels']
LABEL_SEPARATORS = re.compile(r'[;|]')
IGNORE_LABEL = 255
MAX_REPORTED = 20
ENTRY = DATASETS['folder']


class FolderFormatError(ValueError):
    """Problems of a dataset folder: every offending file and line, one per line."""

    def __init__(self, root, problems):
        shown = problems[:MAX_REPORTED]
        more = len(problems) - len(shown)
        super().__init__('dataset folder %s (--data_root) has %d problem(s); nothing was '
                         'written, fix them and rerun:\n  %s%s'
                         % (root, len(problems), '\n  '.join(shown),
                            '\n  ... and %d more' % more if more else ''))
        self.problems = problems


def read_classes(path):
    """(names, {name: (name, aliases...)} of the classes with aliases) of a
    ``classes.txt``; a FolderFormatError lists every bad line."""
    if not os.path.isfile(path):
        raise FileNotFoundError('%s does not exist: a dataset folder needs classes.txt, one '
                                'class name per line (background is implicit)' % path)
    names, aliases, first_line, problems = [], {}, {}, []
    with open(path, encoding='utf-8') as f:
        for lineno, line in enumerate(f, start=1):
            text = line.strip()
            if not text or text.startswith('#'):
                continue
            name, _, alias_text = (part.strip() for part in text.partition(':'))
            where = '%s line %d' % (path, lineno)
            if not name:
                problems.append('%s: no class name before ":"' % where)
            elif name.lower() == 'background':
                problems.append('%s: "background" is implicit (mask id 0); remove the line'
                                % where)
            elif name in first_line:
                problems.append('%s: class %r repeats line %d' % (where, name, first_line[name]))
            else:
                first_line[name] = lineno
                names.append(name)
                extra = tuple(a.strip() for a in alias_text.split(',') if a.strip())
                if extra:
                    aliases[name] = (name,) + extra
    if not names and not problems:
        problems.append('%s: no class names' % path)
    if len(names) > MAX_LABELS - 1:
        problems.append('%s: %d classes; masks are 8-bit PNGs with 255 = ignore, so at most %d '
                        'classes fit' % (path, len(names), MAX_LABELS - 1))
    if problems:
        raise FolderFormatError(os.path.dirname(path), problems)
    return tuple(names), aliases


def image_files(images_dir):
    """({image id: file name} of ``images_dir``, problems: ids given by two files)."""
    if not os.path.isdir(images_dir):
        raise FileNotFoundError('%s does not exist: a dataset folder keeps its images in images/'
                                % images_dir)
    files, problems = {}, []
    for name in sorted(os.listdir(images_dir)):
        stem, ext = os.path.splitext(name)
        if name.startswith('.') or ext.lower() not in IMAGE_EXTENSIONS:
            continue
        if stem in files:
            problems.append('images/%s and images/%s have the same id %r: rename one'
                            % (files[stem], name, stem))
            continue
        files[stem] = name
    return files, problems


def image_id_of(value):
    """The id of a labels-file entry: the value without a known image extension."""
    stem, ext = os.path.splitext(value)
    return stem if ext.lower() in IMAGE_EXTENSIONS else value


def read_labels_csv(path):
    """[(where, image id, [class names])] of a labels.csv; problems of its rows."""
    entries, problems = [], []
    with open(path, newline='', encoding='utf-8') as f:
        reader = csv.reader(f)
        header = [cell.strip().lower() for cell in next(reader, [])]
        if header != CSV_HEADER:
            return [], ['%s line 1: the header must be "image,labels", not %r'
                        % (path, ','.join(header))]
        for row in reader:
            where = '%s line %d' % (path, reader.line_num)
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != 2:
                problems.append('%s: %d columns, expected 2 (image,labels; separate the labels '
                                'with ";" or "|")' % (where, len(row)))
                continue
            labels = [n.strip() for n in LABEL_SEPARATORS.split(row[1]) if n.strip()]
            entries.append((where, image_id_of(row[0].strip()), labels))
    return entries, problems


def read_labels_json(path):
    """[(where, image id, [class names])] of a labels.json; problems of its entries."""
    keys = []

    def keep_pairs(pairs):
        keys.append([k for k, _ in pairs])
        return dict(pairs)

    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f, object_pairs_hook=keep_pairs)
    except json.JSONDecodeError as e:
        return [], ['%s: not valid JSON (%s)' % (path, e)]
    if not isinstance(data, dict):
        return [], ['%s: expected an object {"<id>": ["<class>", ...]}' % path]
    entries, problems = [], []
    for number, key in enumerate(keys[-1], start=1):     # top-level keys, repeats included
        where = '%s entry %d' % (path, number)
        value = data[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            problems.append('%s: expected a list of class names, got %s' % (where,
                                                                           json.dumps(value)))
            continue
        entries.append((where, image_id_of(key), [v.strip() for v in value if v.strip()]))
    return entries, problems


def read_label_entries(root):
    """(path, entries, problems) of the folder's one labels file."""
    present = [n for n in LABEL_FILES if os.path.isfile(os.path.join(root, n))]
    if len(present) != 1:
        raise FileNotFoundError(
            '%s has %s: a dataset folder needs exactly one of labels.csv (header image,labels) '
            'or labels.json ({"<id>": ["<class>", ...]})'
            % (root, 'both labels.csv and labels.json' if present else 'no labels file'))
    path = os.path.join(root, present[0])
    reader = read_labels_csv if path.endswith('.csv') else read_labels_json
    return (path,) + reader(path)


def check_entries(entries, class_index, images):
    """({image id: sorted class ids}, {image id: where}, problems) of the label entries."""
    labels, where_of, problems = {}, {}, []
    for where, image_id, names in entries:
        if image_id in where_of:
            problems.append('%s: image %r repeats %s' % (where, image_id, where_of[image_id]))
            continue
        where_of[image_id] = where
        unknown = [n for n in names if n not in class_index]
        if unknown:
            problems.append('%s: unknown class(es) %s (classes.txt has: %s)'
                            % (where, ', '.join(map(repr, unknown)), ', '.join(class_index)))
        if not names:
            problems.append('%s: image %r has no labels (give it at least one class, or leave '
                            'it out of the labels file)' % (where, image_id))
        if image_id not in images:
            problems.append('%s: image %r is not in images/ (no images/%s.<%s>)'
                            % (where, image_id, image_id,
                               '|'.join(e[1:] for e in IMAGE_EXTENSIONS)))
        if not unknown and names and image_id in images:
            labels[image_id] = tuple(sorted(set(class_index[n] for n in names)))
    return labels, where_of, problems


class FolderDataset(SegmentationSource):
    """An image folder with image-level labels (module docstring: the layout)."""

    name = ENTRY.name
    palette = ENTRY.palette
    masks_optional = True

    def __init__(self, root):
        if not root:
            raise ValueError('no dataset folder given: pass --data_root DIR (with images/, '
                             'classes.txt and labels.csv or labels.json)')
        self.root = os.path.abspath(root)
        if not os.path.isdir(self.root):
            raise FileNotFoundError('dataset folder %s (--data_root) does not exist' % self.root)
        self.class_names, self._aliases = read_classes(os.path.join(self.root, 'classes.txt'))
        self._images, problems = image_files(os.path.join(self.root, 'images'))
        self.labels_path, entries, entry_problems = read_label_entries(self.root)
        class_index = {n: i for i, n in enumerate(self.class_names)}
        self._labels, _, label_problems = check_entries(entries, class_index, self._images)
        problems += entry_problems + label_problems
        if problems:
            raise FolderFormatError(self.root, problems)
        self._warn_unused_classes()

    def _warn_unused_classes(self):
        used = set(c for ids in self._labels.values() for c in ids)
        unused = [n for c, n in enumerate(self.class_names) if c not in used]
        if unused:
            get_logger().warning('WARNING: %s: no image of %s has the class(es) %s (they can '
                                 'never be predicted)', os.path.join(self.root, 'classes.txt'),
                                 os.path.basename(self.labels_path), ', '.join(unused))

    @property
    def class_aliases(self):
        """{class name: (name, aliases...)} of the classes with aliases in classes.txt."""
        return self._aliases

    def image_path(self, image_id):
        return os.path.join(self.root, 'images', self._images.get(image_id, image_id))

    def mask_path(self, image_id):
        return os.path.join(self.root, 'masks', image_id + '.png')

    def read_mask(self, image_id):
        """The mask, refused when it holds ids that are no class (nor 255, ignored)."""
        mask = read_label_png(self.mask_path(image_id))
        values = np.unique(mask)
        bad = values[(values > self.n_classes) & (values != IGNORE_LABEL)]
        if bad.size:
            raise ValueError('mask %s holds the values %s, outside 0..%d (background and the %d '
                             'classes of classes.txt) and 255 (ignored): fix the mask or '
                             'classes.txt' % (self.mask_path(image_id), bad.tolist(),
                                              self.n_classes, self.n_classes))
        return mask

    def image_label_ids(self, image_id):
        if image_id not in self._labels:
            raise KeyError('image %r has no labels in %s' % (image_id, self.labels_path))
        return self._labels[image_id]

    def split_names(self):
        folder = os.path.join(self.root, 'splits')
        listed = sorted(n[:-4] for n in os.listdir(folder) if n.endswith('.txt')) \
            if os.path.isdir(folder) else []
        return sorted(set(listed) | {'train'})

    def split_ids(self, split):
        """Ids of ``splits/<split>.txt``; ``train`` without that file: every labelled image."""
        path = os.path.join(self.root, 'splits', split + '.txt')
        if os.path.isfile(path):
            return self._read_split(path)
        if split == 'train':
            return sorted(self._labels)
        raise FileNotFoundError('split %r: %s does not exist (splits of %s: %s; or pass a list '
                                'file path)' % (split, path, self.root,
                                                ', '.join(self.split_names())))

    def _read_split(self, path):
        ids, seen, problems = [], {}, []
        with open(path, encoding='utf-8') as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                image_id = image_id_of(line.split()[0])
                where = '%s line %d' % (path, lineno)
                if image_id in seen:
                    problems.append('%s: image %r repeats line %d' % (where, image_id,
                                                                      seen[image_id]))
                elif image_id not in self._labels:
                    problems.append('%s: image %r has no labels in %s' % (
                        where, image_id, os.path.basename(self.labels_path)))
                seen.setdefault(image_id, lineno)
                ids.append(image_id)
        if not ids:
            problems.append('%s: no image ids' % path)
        if problems:
            raise FolderFormatError(self.root, problems)
        return ids


def write_classes(path, names, aliases=None):
    """Write a classes.txt (``aliases``: {name: aliases other than the name})."""
    aliases = aliases or {}
    lines = [name + (': ' + ', '.join(aliases[name]) if aliases.get(name) else '')
             for name in names]
    with atomic_write(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


def write_labels(path, labels):
    """Write ``{image id: [class names]}`` as labels.csv or labels.json (by the extension)."""
    with atomic_write(path, 'w') as f:
        if path.endswith('.json'):
            json.dump({i: list(names) for i, names in labels.items()}, f, indent=1)
        else:
            writer = csv.writer(f, lineterminator='\n')
            writer.writerow(CSV_HEADER)
            writer.writerows([i, ';'.join(names)] for i, names in labels.items())
