#!/usr/bin/env bash
# IRNet pseudo masks on MS COCO 2014: the VOC flow (run_voc12_sem_seg.sh) with
# --dataset coco14; as the reference COCO flow, every stage uses train2014 (the
# lists of the coco14 entry of data/registry.py).
# DRY_RUN=1 prints the commands instead of running them.
set -euo pipefail
export DATASET=coco14
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/run_voc12_sem_seg.sh"
