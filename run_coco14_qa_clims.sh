#!/usr/bin/env bash
# QA-CLIMS on MS COCO 2014: the VOC flow (run_voc12_qa_clims.sh) with --dataset coco14,
# whose registry entry (data/registry.py) gives the reference COCO flow's settings
# (lr 1e-5, hyper 30,24,0.2; train2014 for training, CAMs and scoring; coco_vqa_* files).
# Set MSCOCO_ROOT (train2014/, val2014/, annotations/) and the file variables of
# run_voc12_qa_clims.sh; its settings can be overridden the same way.
# DRY_RUN=1 prints the commands instead of running them.
set -euo pipefail
export DATASET=coco14
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/run_voc12_qa_clims.sh"
