"""VQA answers (docs/method.md#vqa-answers) and the CLIP text features built from them
(docs/method.md#text-features)."""
