"""VQA answers (METHOD.md stage 1) and the CLIP text features built from them (stage 2)."""
