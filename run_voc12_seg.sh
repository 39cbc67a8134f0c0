#!/usr/bin/env bash
# DeepLab on the pseudo masks (the paper's final step; not in the reference
# repository): train on SEG_TRAIN_LIST with $WORK_SPACE/sem_seg, evaluate on SEG_EVAL_SET
# with multi-scale + flip inference, with and without dense CRF (both stages
# use NGPU processes: DDP training, evaluation sharded over the processes).
# Run run_voc12_sem_seg.sh first: it writes the pseudo masks of its INFER_LIST
# (train_aug), which must cover SEG_TRAIN_LIST here. A setting's variable is its
# run_sample.py flag in capitals (SEG_BATCH_SIZE for --seg_batch_size).
#
# Set the variables below (or export them) and run:  bash run_voc12_seg.sh
# DRY_RUN=1 prints the commands (one per line) instead of running them.
set -euo pipefail

DATASET=${DATASET:-voc12}                           # voc12 or coco14 (run_coco14_*.sh set it)
VOC12_ROOT=${VOC12_ROOT:-data/VOCdevkit/VOC2012}
MSCOCO_ROOT=${MSCOCO_ROOT:-data/coco2014}
WORK_SPACE=${WORK_SPACE:-work_space/qa_clims_$DATASET}
BACKBONE_WEIGHTS=${BACKBONE_WEIGHTS:-resnet101-63fe2227.pth}   # torchvision ResNet-101, local file
                                    # (or deeplabv1_resnet101.pth with SEG_ARCH=deeplabv2_caffe)
NGPU=${NGPU:-1}
NUM_WORKERS=${NUM_WORKERS:-8}
PYTHON=${PYTHON:-python}
CRF=${CRF:-True}                      # scored with and without dense CRF

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/scripts/flow_common.sh"
# The other settings, when not set, are run_sample.py's for $DATASET: SEG_ARCH deeplabv2
# (deeplabv2_caffe: a converted DeepLab init; deeplabv3), SEG_LABEL_DIR the pseudo masks
# (gt = ground truth, the upper bound), SEG_ITER_SIZE micro-batches accumulated per
# iteration (CLIMS's config: 2), SEG_MSC deeplab-pytorch's multi-scale inputs, SEG_SCALES
# the training rescale factors (CLIMS: up to 2.0), SEG_EVAL_SCALES / SEG_EVAL_FLIP the
# inference (deeplab-pytorch's own test: SEG_EVAL_SCALES=1.0 SEG_EVAL_FLIP=False),
# SEG_SUBMISSION=True with SEG_EVAL_SET=test the VOC server layout.
python_defaults SEG_ARCH=seg_arch SEG_TRAIN_LIST=seg_train_list SEG_LABEL_DIR=seg_label_dir \
    SEG_BATCH_SIZE=seg_batch_size SEG_ITER_SIZE=seg_iter_size SEG_MSC=seg_msc \
    SEG_SCALES=seg_scales SEG_CROP_SIZE=seg_crop_size SEG_NUM_ITERS=seg_num_iters \
    SEG_LEARNING_RATE=seg_learning_rate SEG_WEIGHT_DECAY=seg_weight_decay \
    SEG_EVAL_SET=seg_eval_set SEG_EVAL_SCALES=seg_eval_scales SEG_EVAL_FLIP=seg_eval_flip \
    SEG_SUBMISSION=seg_submission AMP=amp
backbone=()
if [ -f "$BACKBONE_WEIGHTS" ]; then backbone=(--seg_backbone_weights "$BACKBONE_WEIGHTS"); fi
common=("${data[@]}" --work_space "$WORK_SPACE" --num_workers "$NUM_WORKERS"
        --seg_arch "$SEG_ARCH" --seg_msc "$SEG_MSC" --amp "$AMP")

run "${launch[@]}" "$repo/run_sample.py" "${common[@]}" "${backbone[@]}" \
    --seg_train_list "$SEG_TRAIN_LIST" --seg_label_dir "$SEG_LABEL_DIR" \
    --seg_batch_size "$SEG_BATCH_SIZE" --seg_iter_size "$SEG_ITER_SIZE" \
    --seg_scales "$SEG_SCALES" --seg_crop_size "$SEG_CROP_SIZE" \
    --seg_num_iters "$SEG_NUM_ITERS" --seg_learning_rate "$SEG_LEARNING_RATE" \
    --seg_weight_decay "$SEG_WEIGHT_DECAY" --train_seg_pass True

run "${launch[@]}" "$repo/run_sample.py" "${common[@]}" --seg_eval_set "$SEG_EVAL_SET" \
    --seg_eval_scales "$SEG_EVAL_SCALES" --seg_eval_flip "$SEG_EVAL_FLIP" --seg_crf "$CRF" \
    --seg_submission "$SEG_SUBMISSION" --eval_seg_pass True
