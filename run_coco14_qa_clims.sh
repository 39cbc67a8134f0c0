#!/usr/bin/env bash
# QA-CLIMS on MS COCO 2014: the VOC flow (run_voc12_qa_clims.sh) with --dataset coco14
# and the reference COCO flow's settings (lr 1e-5, hyper 30,24,0.2; train2014 for
# training, CAMs and scoring). Set MSCOCO_ROOT (train2014/, val2014/, annotations/)
# and the file variables of run_voc12_qa_clims.sh; the COCO defaults below can be
# overridden the same way. DRY_RUN=1 prints the commands instead of running them.
set -euo pipefail
export DATASET=coco14
export MSCOCO_ROOT=${MSCOCO_ROOT:-data/coco2014}
export WORK_SPACE=${WORK_SPACE:-work_space/qa_clims_coco14}
export TRAIN_LIST=${TRAIN_LIST:-train}
export INFER_LIST=${INFER_LIST:-train}
export EVAL_SET=${EVAL_SET:-train}
export LR=${LR:-0.00001}
export HYPER=${HYPER:-30,24,0.2}
export CAM_WEIGHTS=${CAM_WEIGHTS:-cam-baseline-coco14/res50_cam.pth}
export VQA_FG=${VQA_FG:-vqa/coco_vqa_fg_blip.json}
export VQA_BG=${VQA_BG:-vqa/coco_vqa_bg_blip.json}
export VQA_FG_CACHE=${VQA_FG_CACHE:-vqa/coco_vqa_fg_blip_ViT-L-14_cache.safetensors}
export VQA_BG_CACHE=${VQA_BG_CACHE:-vqa/coco_vqa_bg_blip_ViT-L-14_cache.safetensors}
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/run_voc12_qa_clims.sh"
