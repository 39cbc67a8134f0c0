"""Noun lemmatisation of VQA answers (docs/method.md#vqa-answers).

The reference uses NLTK's WordNet lemmatiser; its data is a separate
download. It is used when NLTK and its WordNet data are installed; otherwise
``lemminflect`` (ships its own data) lemmatises the last word of the answer
(the head noun of answers like "living rooms"). The name of the one that ran
is recorded with the results.
"""


def wordnet_lemmatizer():
    """NLTK's WordNet noun lemmatiser, or None when NLTK or its data is missing."""
    try:
        from nltk.corpus import wordnet
        from nltk.stem import WordNetLemmatizer
        wordnet.ensure_loaded()
    except (ImportError, LookupError, OSError):
        return None
    lemmatizer = WordNetLemmatizer()
    return lambda answer: lemmatizer.lemmatize(answer)


def lemminflect_lemmatizer():
    """lemminflect noun lemma of the last word of an answer."""
    from lemminflect import getLemma

    def lemmatize(answer):
        words = answer.split(' ')
        if not words[-1]:
            return answer
        lemma = getLemma(words[-1], upos='NOUN', lemmatize_oov=True)
        return ' '.join(words[:-1] + [lemma[0] if lemma else words[-1]])
    return lemmatize


def make_lemmatizer(prefer='auto'):
    """(name, function) of the lemmatiser to use: 'wordnet', 'lemminflect' or 'auto'."""
    if prefer in ('auto', 'wordnet'):
        wordnet = wordnet_lemmatizer()
        if wordnet is not None:
            return 'nltk-wordnet', wordnet
        if prefer == 'wordnet':
            raise RuntimeError('NLTK WordNet data is not installed (python -m nltk.downloader '
                               'wordnet); use --vqa_lemmatizer lemminflect')
    return 'lemminflect', lemminflect_lemmatizer()
