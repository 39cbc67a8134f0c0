#!/usr/bin/env bash
# IRNet pseudo masks on MS COCO 2014: the VOC flow (run_voc12_sem_seg.sh) with
# --dataset coco14; as the reference COCO flow, every stage uses train2014.
# DRY_RUN=1 prints the commands instead of running them.
set -euo pipefail
export DATASET=coco14
export MSCOCO_ROOT=${MSCOCO_ROOT:-data/coco2014}
export WORK_SPACE=${WORK_SPACE:-work_space/qa_clims_coco14}
export TRAIN_LIST=${TRAIN_LIST:-train}
export INFER_LIST=${INFER_LIST:-train}
export EVAL_SET=${EVAL_SET:-train}
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/run_voc12_sem_seg.sh"
