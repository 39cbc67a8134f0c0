#!/usr/bin/env bash
# DeepLab on the COCO 2014 pseudo masks: the VOC flow (run_voc12_seg.sh) with
# --dataset coco14, trained on train2014 (the coco14 entry of data/registry.py),
# evaluated on val2014.
# DRY_RUN=1 prints the commands instead of running them.
set -euo pipefail
export DATASET=coco14
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/run_voc12_seg.sh"
