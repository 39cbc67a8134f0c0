#!/usr/bin/env bash
# IRNet on the QA-CLIMS CAMs: confident regions, IRNet training, random-walk
# pseudo masks and their evaluation (the reference run_voc12_sem_seg.sh flow).
# Run run_voc12_qa_clims.sh first (it writes $WORK_SPACE/cams for its INFER_LIST).
#
# Set the variables below (or export them) and run:  bash run_voc12_sem_seg.sh
# DRY_RUN=1 prints the commands (one per line) instead of running them.
# Images (as the reference): confident regions and IRNet training on TRAIN_LIST,
# pseudo masks (what run_voc12_seg.sh trains on) for INFER_LIST, CHAINER_EVAL_SET
# scored. A setting's variable is its run_sample.py flag in capitals.
set -euo pipefail

DATASET=${DATASET:-voc12}                           # voc12 or coco14 (run_coco14_*.sh set it)
VOC12_ROOT=${VOC12_ROOT:-data/VOCdevkit/VOC2012}
MSCOCO_ROOT=${MSCOCO_ROOT:-data/coco2014}
WORK_SPACE=${WORK_SPACE:-work_space/qa_clims_$DATASET}
IMAGENET_WEIGHTS=${IMAGENET_WEIGHTS:-resnet50-19c8e357.pth}   # torchvision ResNet-50, local file
NGPU=${NGPU:-1}
NUM_WORKERS=${NUM_WORKERS:-8}
PYTHON=${PYTHON:-python}

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/scripts/flow_common.sh"
# The other settings, when not set, are run_sample.py's for $DATASET: TRAIN_LIST for
# the confident regions and IRNet training, INFER_LIST for the displacement mean and
# the pseudo masks, CHAINER_EVAL_SET scored by eval_sem_seg; IRN_LEARNING_RATE is the edge
# branch's (displacement branch 10x), IRN_RESCALE the random rescale range.
python_defaults TRAIN_LIST=train_list INFER_LIST=infer_list CHAINER_EVAL_SET=chainer_eval_set \
    CONF_FG_THRES=conf_fg_thres CONF_BG_THRES=conf_bg_thres IRN_CROP_SIZE=irn_crop_size \
    IRN_BATCH_SIZE=irn_batch_size IRN_NUM_EPOCHES=irn_num_epoches \
    IRN_LEARNING_RATE=irn_learning_rate IRN_RESCALE=irn_rescale BETA=beta EXP_TIMES=exp_times \
    SEM_SEG_BG_THRES=sem_seg_bg_thres
common=("${data[@]}" --work_space "$WORK_SPACE" --num_workers "$NUM_WORKERS")

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

run "$PYTHON" "$repo/run_sample.py" "${common[@]}" --chainer_eval_set "$CHAINER_EVAL_SET" \
    --eval_sem_seg_pass True
