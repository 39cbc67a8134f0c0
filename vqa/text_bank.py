"""Per-(image, class) text features of QA-CLIMS training (docs/method.md#text-features).

For each training pair (image, present class):
  t_fg = 0.5 * f(class) + 0.5 * mean_k f(prompted FG answer k)   [D], not re-normalised
  T_bg = the cached features of the distinct BG answers            [L, D]
``f(class)`` comes from the TRAINING CLIP (the mask-adapted model when it is
used), the answer features from the caches made with plain CLIP, as in the
reference. Pairs with L = 0 are kept but flagged: they add no contrastive loss.
BG features are stored as indices into the BG cache (memory ~ pairs x 10 ints).
"""
import torch

from vqa.results import missing_entries
from vqa.text_features import answer_selector, bg_answers, fg_prompted_answers


class TextBank:
    """Lookup tables of every training pair, built once at start-up."""

    def __init__(self, pair_index, fg_features, bg_table, bg_index, bg_valid):
        self.pair_index = pair_index          # {(image_id, class_id): row}
        self.fg_features = fg_features        # [P, D]
        self.bg_table = bg_table              # [N_bg_texts, D]
        self.bg_index = bg_index              # [P, L_max] rows of bg_table (0 where padded)
        self.bg_valid = bg_valid              # [P, L_max] bool

    def to(self, device):
        return TextBank(self.pair_index, self.fg_features.to(device), self.bg_table.to(device),
                        self.bg_index.to(device), self.bg_valid.to(device))

    def rows(self, image_ids, class_ids):
        """Row of each (image id, class id) instance as a LongTensor."""
        return torch.tensor([self.pair_index[(i, int(c))] for i, c in zip(image_ids, class_ids)],
                            dtype=torch.long, device=self.fg_features.device)

    def features(self, rows):
        """(t_fg [I, D], T_bg [I, L_max, D], valid [I, L_max], has_bg [I])."""
        valid = self.bg_valid[rows]
        return (self.fg_features[rows], self.bg_table[self.bg_index[rows]], valid,
                valid.any(dim=1))


def training_pairs(source, ids):
    """(image id, class id) of every present class of every training image."""
    return [(i, c) for i in ids for c in source.image_label_ids(i)]


def require_vqa_entries(fg_results, bg_results, pairs, class_names, fg_path, bg_path):
    """Report missing VQA entries up front with their count and the first ids."""
    named = [(i, class_names[c]) for i, c in pairs]
    for results, path in ((fg_results, fg_path), (bg_results, bg_path)):
        missing = missing_entries(results, named)
        if missing:
            raise KeyError('%s has no entry for %d of the %d (image, class) pairs of the '
                           'training list, first: %s; regenerate the VQA answers for this list'
                           % (path, len(missing), len(named),
                              ', '.join('%s/%s' % m for m in missing[:5])))


def build_text_bank(pairs, class_names, label_features, fg_results, bg_results, fg_cache,
                    bg_cache, aliases):
    """TextBank of ``pairs``; ``label_features`` [n_classes, D] normalised f(class).

    The answers of each pair are those the reference selects
    (:func:`vqa.text_features.answer_selector`); ``aliases``: the names that
    count as each class in an FG answer (:func:`vqa.text_features.fg_prompted_answers`).
    """
    select_fg, select_bg = answer_selector(fg_results, 'fg'), answer_selector(bg_results, 'bg')
    fg_rows, bg_lists = [], []
    for image_id, c in pairs:
        name = class_names[c]
        answers_fg = fg_prompted_answers(name, select_fg(image_id, name), aliases)
        mean_answer = fg_cache.lookup(answers_fg).mean(dim=0)
        fg_rows.append(0.5 * label_features[c] + 0.5 * mean_answer)
        bg_lists.append(bg_cache.rows(bg_answers(name, select_bg(image_id, name))))
    l_max = max([len(b) for b in bg_lists] + [1])
    bg_index = torch.zeros(len(pairs), l_max, dtype=torch.long)
    bg_valid = torch.zeros(len(pairs), l_max, dtype=torch.bool)
    for row, indices in enumerate(bg_lists):
        bg_index[row, :len(indices)] = torch.tensor(indices, dtype=torch.long)
        bg_valid[row, :len(indices)] = True
    pair_index = {pair: row for row, pair in enumerate(pairs)}
    fg = torch.stack(fg_rows) if fg_rows else torch.zeros(0, label_features.shape[1])
    return TextBank(pair_index, fg, bg_cache.features, bg_index, bg_valid)
