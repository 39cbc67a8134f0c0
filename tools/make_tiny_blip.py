"""A tiny, randomly initialised BLIP VQA model and tokenizer, saved with
``save_pretrained`` (for the tests, the benchmark and trying the VQA step
without the 1.5 GB checkpoint).

    python tools/make_tiny_blip.py --out tiny_blip [--seed 0]

Vocabulary: BERT's special tokens, BLIP's [DEC] (the BOS token) and [ENC] (a
special token, the reference's first question token), the words of the
questions, the class names of VOC and a few answer words.
"""
import argparse
import os
import sys

import torch
from transformers import BertTokenizer, BlipConfig, BlipForQuestionAnswering

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data.registry import DATASETS  # noqa: E402
from vqa.results import BG_QUESTIONS, FG_QUESTIONS  # noqa: E402

SPECIAL = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', '[DEC]', '[ENC]']
ANSWER_WORDS = ['grass', 'wall', 'sky', 'room', 'table', 'floor', 'street', 'tree', 'water',
                'red', 'blue', 'green', 'small', 'large', 'old', 'toy', 'cats', 'dogs', 'trees']


def tiny_vocabulary():
    """Special tokens, then every word of the questions, class names and answers."""
    words = []
    for text in FG_QUESTIONS + BG_QUESTIONS + DATASETS['voc12'].class_names + tuple(ANSWER_WORDS):
        for word in text.lower().replace('?', ' ? ').replace('{}', ' ').split():
            if word not in words:
                words.append(word)
    return SPECIAL + words


def write_tiny_blip(out_dir, seed=0, image_size=32):
    """Save a tiny BLIP VQA model + tokenizer to ``out_dir``; returns it."""
    vocab = tiny_vocabulary()
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True,
                              bos_token='[DEC]', additional_special_tokens=['[ENC]'])
    text = dict(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1,
                num_attention_heads=2, intermediate_size=64, encoder_hidden_size=32,
                max_position_embeddings=64, bos_token_id=vocab.index('[DEC]'),
                sep_token_id=vocab.index('[SEP]'), pad_token_id=vocab.index('[PAD]'))
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=2, image_size=image_size, patch_size=16)
    torch.manual_seed(seed)
    model = BlipForQuestionAnswering(BlipConfig(text_config=text, vision_config=vision))
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', required=True)
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args(argv)
    print('tiny BLIP VQA -> %s' % write_tiny_blip(a.out, a.seed))


if __name__ == '__main__':
    main()
