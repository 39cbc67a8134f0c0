#!/usr/bin/env bash
# QA-CLIMS on PASCAL VOC 2012 (the reference run_voc12_qa_clims.sh flow):
# text-feature caches of the VQA answers (once), QA-CLIMS training from the
# baseline CAM weights, multi-scale CAMs, CAM evaluation with the threshold sweep.
#
# Set the variables below (or export them) and run:  bash run_voc12_qa_clims.sh
# SKIP_TRAIN=1 only makes and evaluates CAMs (e.g. with the authors' res50_qa_clims.pth).
# DRY_RUN=1 prints the commands (one per line) instead of running them.
# Images (as the reference): QA-CLIMS trains on TRAIN_LIST, CAMs are made for
# INFER_LIST (run_voc12_sem_seg.sh needs them for all of its images) and
# CHAINER_EVAL_SET is the split scored. A setting's variable is its run_sample.py
# flag in capitals (CLIMS_BATCH_SIZE for --clims_batch_size).
set -euo pipefail

DATASET=${DATASET:-voc12}                           # a --dataset (run_coco14_*.sh set coco14)
VOC12_ROOT=${VOC12_ROOT:-data/VOCdevkit/VOC2012}    # the dataset's root flag in capitals
MSCOCO_ROOT=${MSCOCO_ROOT:-data/coco2014}   # train2014/, val2014/, annotations/
WORK_SPACE=${WORK_SPACE:-work_space/qa_clims_$DATASET}
NGPU=${NGPU:-1}                                     # processes (GPUs); torchrun when > 1
NUM_WORKERS=${NUM_WORKERS:-8}
PYTHON=${PYTHON:-python}
SKIP_TRAIN=${SKIP_TRAIN:-0}
CAM_WEIGHTS=${CAM_WEIGHTS:-cam-baseline-$DATASET/res50_cam.pth}   # baseline (authors' file or ours)
MASK_CLIP_WEIGHTS=${MASK_CLIP_WEIGHTS:-ovseg_swinbase_vitL14_ft_mpt.pth}

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/scripts/flow_common.sh"
# The other settings, when not set, are run_sample.py's for $DATASET (e.g.
# CLIMS_LEARNING_RATE: 0.00035 on VOC, 0.00001 on COCO); CLIMS_BATCH_SIZE is the global
# batch (the reference: 4 x 2 GPUs).
python_defaults TRAIN_LIST=train_list INFER_LIST=infer_list CHAINER_EVAL_SET=chainer_eval_set \
    CLIMS_WEIGHTS_NAME=clims_weights_name CLIP=clip USE_MASK_CLIP=use_mask_clip \
    CLIMS_BATCH_SIZE=clims_batch_size CLIMS_NUM_EPOCHES=clims_num_epoches \
    CLIMS_LEARNING_RATE=clims_learning_rate CLIMS_WEIGHT_DECAY=clims_weight_decay HYPER=hyper \
    CLIMS_CROP_SIZE=clims_crop_size CLIMS_RESIZE_LONG=clims_resize_long CAM_SCALES=cam_scales \
    NCE_T=nce_t MASK_ADAPTER_ALPHA=mask_adapter_alpha CAM_EVAL_THRES=cam_eval_thres \
    vqa_fg_file=vqa_fg_file vqa_bg_file=vqa_bg_file vqa_fg_cache_file=vqa_fg_cache_file \
    vqa_bg_cache_file=vqa_bg_cache_file
VQA_FG=${VQA_FG:-vqa/$vqa_fg_file}                  # the dataset's VQA file names, in vqa/
VQA_BG=${VQA_BG:-vqa/$vqa_bg_file}
VQA_FG_CACHE=${VQA_FG_CACHE:-vqa/$vqa_fg_cache_file}
VQA_BG_CACHE=${VQA_BG_CACHE:-vqa/$vqa_bg_cache_file}
common=("${data[@]}" --work_space "$WORK_SPACE" --num_workers "$NUM_WORKERS"
        --clims_weights_name "$CLIMS_WEIGHTS_NAME")

if [ "$SKIP_TRAIN" != 1 ]; then
    if [ ! -f "$VQA_FG_CACHE" ] || [ ! -f "$VQA_BG_CACHE" ]; then
        run "$PYTHON" "$repo/tools/gen_text_feats_cache.py" "$DATASET" --vqa_fg_file "$VQA_FG" \
            --vqa_fg_cache_file "$VQA_FG_CACHE" --vqa_bg_file "$VQA_BG" \
            --vqa_bg_cache_file "$VQA_BG_CACHE" --clip "$CLIP"
    fi
    run "${launch[@]}" "$repo/run_sample.py" "${common[@]}" --train_list "$TRAIN_LIST" \
        --cam_weights_name "$CAM_WEIGHTS" --clip "$CLIP" --use_mask_clip "$USE_MASK_CLIP" \
        --mask_clip_weights "$MASK_CLIP_WEIGHTS" --vqa_fg_file "$VQA_FG" --vqa_bg_file "$VQA_BG" \
        --vqa_fg_cache_file "$VQA_FG_CACHE" --vqa_bg_cache_file "$VQA_BG_CACHE" \
        --clims_batch_size "$CLIMS_BATCH_SIZE" --clims_num_epoches "$CLIMS_NUM_EPOCHES" \
        --clims_learning_rate "$CLIMS_LEARNING_RATE" --clims_weight_decay "$CLIMS_WEIGHT_DECAY" \
        --hyper "$HYPER" --clims_crop_size "$CLIMS_CROP_SIZE" \
        --clims_resize_long "$CLIMS_RESIZE_LONG" --nce_t "$NCE_T" --mask_adapter_alpha "$MASK_ADAPTER_ALPHA" --train_qa_clims_pass True
fi

run "${launch[@]}" "$repo/run_sample.py" "${common[@]}" --infer_list "$INFER_LIST" \
    --cam_scales "$CAM_SCALES" --make_clims_pass True

run "$PYTHON" "$repo/run_sample.py" "${common[@]}" --chainer_eval_set "$CHAINER_EVAL_SET" \
    --cam_eval_thres "$CAM_EVAL_THRES" --eval_cam_best True --eval_cam_pass True
