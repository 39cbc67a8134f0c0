#!/usr/bin/env bash
# IRNet on the QA-CLIMS CAMs: confident regions, IRNet training, random-walk
# pseudo masks and their evaluation (the reference run_voc12_sem_seg.sh flow).
# Run run_voc12_qa_clims.sh first (it writes $WORK_SPACE/cams for its INFER_LIST).
#
# Set the variables below (or export them) and run:  bash run_voc12_sem_seg.sh
# DRY_RUN=1 prints the commands (one per line) instead of running them.
# Images (as the reference): confident regions and IRNet training on TRAIN_LIST,
# pseudo masks (what run_voc12_seg.sh trains on) for INFER_LIST, EVAL_SET scored.
set -euo pipefail

DATASET=${DATASET:-voc12}                           # voc12 or coco14 (run_coco14_*.sh set it)
VOC12_ROOT=${VOC12_ROOT:-data/VOCdevkit/VOC2012}
MSCOCO_ROOT=${MSCOCO_ROOT:-data/coco2014}
WORK_SPACE=${WORK_SPACE:-work_space/qa_clims_voc12}
IMAGENET_WEIGHTS=${IMAGENET_WEIGHTS:-resnet50-19c8e357.pth}   # torchvision ResNet-50, local file
NGPU=${NGPU:-1}
NUM_WORKERS=${NUM_WORKERS:-8}
PYTHON=${PYTHON:-python}
TRAIN_LIST=${TRAIN_LIST:-train_aug}    # confident regions and IRNet training
INFER_LIST=${INFER_LIST:-train_aug}    # displacement mean and pseudo masks
EVAL_SET=${EVAL_SET:-train}            # split scored by eval_sem_seg
CONF_FG_THRES=${CONF_FG_THRES:-0.30}
CONF_BG_THRES=${CONF_BG_THRES:-0.10}
IRN_CROP_SIZE=${IRN_CROP_SIZE:-512}
IRN_BATCH_SIZE=${IRN_BATCH_SIZE:-32}
IRN_NUM_EPOCHES=${IRN_NUM_EPOCHES:-3}
IRN_LEARNING_RATE=${IRN_LEARNING_RATE:-0.1}   # edge branch (displacement branch 10x)
IRN_RESCALE=${IRN_RESCALE:-0.5,1.5}           # random rescale range
BETA=${BETA:-10}
EXP_TIMES=${EXP_TIMES:-8}
SEM_SEG_BG_THRES=${SEM_SEG_BG_THRES:-0.20}

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/scripts/flow_common.sh"
common=("${data[@]}" --work_space "$WORK_SPACE" --num_workers "$NUM_WORKERS"
        --cam_out_dir cams --ir_label_out_dir ir_label --sem_seg_out_dir sem_seg
        --irn_weights_name res50_irn.safetensors)

run "$PYTHON" "$repo/run_sample.py" "${common[@]}" --train_list "$TRAIN_LIST" \
    --conf_fg_thres "$CONF_FG_THRES" --conf_bg_thres "$CONF_BG_THRES" \
    --cam_to_ir_label_pass True

imagenet=()
if [ -f "$IMAGENET_WEIGHTS" ]; then imagenet=(--imagenet_weights "$IMAGENET_WEIGHTS"); fi
run "${launch[@]}" "$repo/run_sample.py" "${common[@]}" --train_list "$TRAIN_LIST" \
    --infer_list "$INFER_LIST" "${imagenet[@]}" \
    --irn_crop_size "$IRN_CROP_SIZE" --irn_batch_size "$IRN_BATCH_SIZE" \
    --irn_num_epoches "$IRN_NUM_EPOCHES" --irn_learning_rate "$IRN_LEARNING_RATE" \
    --irn_rescale "$IRN_RESCALE" --train_irn_pass True

run "${launch[@]}" "$repo/run_sample.py" "${common[@]}" --infer_list "$INFER_LIST" \
    --beta "$BETA" --exp_times "$EXP_TIMES" --sem_seg_bg_thres "$SEM_SEG_BG_THRES" \
    --sem_seg_color True --make_sem_seg_pass True

run "$PYTHON" "$repo/run_sample.py" "${common[@]}" --chainer_eval_set "$EVAL_SET" \
    --eval_sem_seg_pass True
