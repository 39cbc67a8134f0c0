#!/usr/bin/env bash
# DeepLab on the pseudo masks (the paper's final step; not in the reference
# repository): train on TRAIN_LIST with $WORK_SPACE/sem_seg, evaluate on EVAL_SET
# with multi-scale + flip inference, with and without dense CRF (both stages
# use NGPU processes: DDP training, evaluation sharded over the processes).
# Run run_voc12_sem_seg.sh first: it writes the pseudo masks of its INFER_LIST
# (train_aug), which must cover TRAIN_LIST here.
#
# Set the variables below (or export them) and run:  bash run_voc12_seg.sh
# DRY_RUN=1 prints the commands (one per line) instead of running them.
set -euo pipefail

DATASET=${DATASET:-voc12}                           # voc12 or coco14 (run_coco14_*.sh set it)
VOC12_ROOT=${VOC12_ROOT:-data/VOCdevkit/VOC2012}
MSCOCO_ROOT=${MSCOCO_ROOT:-data/coco2014}
WORK_SPACE=${WORK_SPACE:-work_space/qa_clims_$DATASET}
BACKBONE_WEIGHTS=${BACKBONE_WEIGHTS:-resnet101-63fe2227.pth}   # torchvision ResNet-101, local file
                                    # (or deeplabv1_resnet101.pth with ARCH=deeplabv2_caffe)
NGPU=${NGPU:-1}
NUM_WORKERS=${NUM_WORKERS:-8}
PYTHON=${PYTHON:-python}
CRF=${CRF:-True}                      # scored with and without dense CRF

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/scripts/flow_common.sh"
# The other settings, when not set, are run_sample.py's for $DATASET: ARCH deeplabv2
# (deeplabv2_caffe: a converted DeepLab init; deeplabv3), LABEL_DIR the pseudo masks
# (gt = ground truth, the upper bound), ITER_SIZE micro-batches accumulated per
# iteration (CLIMS's config: 2), MSC deeplab-pytorch's multi-scale inputs, SCALES the
# training rescale factors (CLIMS: up to 2.0), EVAL_SCALES / EVAL_FLIP the inference
# (deeplab-pytorch's own test: EVAL_SCALES=1.0 EVAL_FLIP=False), SUBMISSION=True with
# EVAL_SET=test the VOC server layout.
python_defaults ARCH=seg_arch TRAIN_LIST=seg_train_list LABEL_DIR=seg_label_dir \
    BATCH_SIZE=seg_batch_size ITER_SIZE=seg_iter_size MSC=seg_msc SCALES=seg_scales \
    CROP_SIZE=seg_crop_size NUM_ITERS=seg_num_iters LR=seg_learning_rate \
    WEIGHT_DECAY=seg_weight_decay EVAL_SET=seg_eval_set EVAL_SCALES=seg_eval_scales \
    EVAL_FLIP=seg_eval_flip SUBMISSION=seg_submission AMP=amp
backbone=()
if [ -f "$BACKBONE_WEIGHTS" ]; then backbone=(--seg_backbone_weights "$BACKBONE_WEIGHTS"); fi
common=("${data[@]}" --work_space "$WORK_SPACE" --num_workers "$NUM_WORKERS"
        --seg_arch "$ARCH" --seg_msc "$MSC" --amp "$AMP")

run "${launch[@]}" "$repo/run_sample.py" "${common[@]}" "${backbone[@]}" \
    --seg_train_list "$TRAIN_LIST" --seg_label_dir "$LABEL_DIR" \
    --seg_batch_size "$BATCH_SIZE" --seg_iter_size "$ITER_SIZE" --seg_scales "$SCALES" \
    --seg_crop_size "$CROP_SIZE" --seg_num_iters "$NUM_ITERS" \
    --seg_learning_rate "$LR" --seg_weight_decay "$WEIGHT_DECAY" --train_seg_pass True

run "${launch[@]}" "$repo/run_sample.py" "${common[@]}" --seg_eval_set "$EVAL_SET" \
    --seg_eval_scales "$EVAL_SCALES" --seg_eval_flip "$EVAL_FLIP" --seg_crf "$CRF" \
    --seg_submission "$SUBMISSION" --eval_seg_pass True
