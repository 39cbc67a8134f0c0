#!/usr/bin/env bash
# DeepLab on the COCO 2014 pseudo masks: the VOC flow (run_voc12_seg.sh) with
# --dataset coco14, trained on train2014, evaluated on val2014.
# DRY_RUN=1 prints the commands instead of running them.
set -euo pipefail
export DATASET=coco14
export MSCOCO_ROOT=${MSCOCO_ROOT:-data/coco2014}
export WORK_SPACE=${WORK_SPACE:-work_space/qa_clims_coco14}
export TRAIN_LIST=${TRAIN_LIST:-train}
export EVAL_SET=${EVAL_SET:-val}
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/run_voc12_seg.sh"
