#!/usr/bin/env bash
# QA-CLIMS on PASCAL VOC 2012 (the reference run_voc12_qa_clims.sh flow):
# text-feature caches of the VQA answers (once), QA-CLIMS training from the
# baseline CAM weights, multi-scale CAMs, CAM evaluation with the threshold sweep.
#
# Set the variables below (or export them) and run:  bash run_voc12_qa_clims.sh
# SKIP_TRAIN=1 only makes and evaluates CAMs (e.g. with the authors' res50_qa_clims.pth).
# DRY_RUN=1 prints the commands (one per line) instead of running them.
# Images (as the reference): QA-CLIMS trains on TRAIN_LIST, CAMs are made for
# INFER_LIST (run_voc12_sem_seg.sh needs them for all of its images) and EVAL_SET
# is the split scored.
set -euo pipefail

DATASET=${DATASET:-voc12}                           # voc12 or coco14 (run_coco14_*.sh set it)
VOC12_ROOT=${VOC12_ROOT:-data/VOCdevkit/VOC2012}
MSCOCO_ROOT=${MSCOCO_ROOT:-data/coco2014}   # train2014/, val2014/, annotations/
WORK_SPACE=${WORK_SPACE:-work_space/qa_clims_voc12}
NGPU=${NGPU:-1}                                     # processes (GPUs); torchrun when > 1
NUM_WORKERS=${NUM_WORKERS:-8}
PYTHON=${PYTHON:-python}
SKIP_TRAIN=${SKIP_TRAIN:-0}
TRAIN_LIST=${TRAIN_LIST:-train_aug}                               # QA-CLIMS training images
INFER_LIST=${INFER_LIST:-train_aug}                               # images that get CAMs
EVAL_SET=${EVAL_SET:-train}                                       # split scored by eval_cam
CAM_WEIGHTS=${CAM_WEIGHTS:-cam-baseline-voc12/res50_cam.pth}      # baseline (authors' file or ours)
CLIMS_WEIGHTS=${CLIMS_WEIGHTS:-res50_qa_clims.safetensors}        # output (or input with SKIP_TRAIN=1)
CLIP=${CLIP:-ViT-L/14}                                            # ~/.cache/clip/ViT-L-14.pt or a file
MASK_CLIP_WEIGHTS=${MASK_CLIP_WEIGHTS:-ovseg_swinbase_vitL14_ft_mpt.pth}
USE_MASK_CLIP=${USE_MASK_CLIP:-True}
VQA_FG=${VQA_FG:-vqa/voc_vqa_fg_blip.json}
VQA_BG=${VQA_BG:-vqa/voc_vqa_bg_blip.json}
VQA_FG_CACHE=${VQA_FG_CACHE:-vqa/voc_vqa_fg_blip_ViT-L-14_cache.safetensors}
VQA_BG_CACHE=${VQA_BG_CACHE:-vqa/voc_vqa_bg_blip_ViT-L-14_cache.safetensors}
BATCH_SIZE=${BATCH_SIZE:-8}                                       # global (reference: 4 x 2 GPUs)
EPOCHS=${EPOCHS:-15}
LR=${LR:-0.00035}                                                 # backbone (classifier 10x)
HYPER=${HYPER:-10,8,0.2}                                          # weights of L_FRC, L_BRC, L_REG
CROP_SIZE=${CROP_SIZE:-512}
CAM_SCALES=${CAM_SCALES:-1.0,0.5,1.5,2.0}

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/scripts/flow_common.sh"
common=("${data[@]}" --work_space "$WORK_SPACE" --num_workers "$NUM_WORKERS"
        --clims_weights_name "$CLIMS_WEIGHTS" --cam_out_dir cams)

if [ "$SKIP_TRAIN" != 1 ]; then
    if [ ! -f "$VQA_FG_CACHE" ] || [ ! -f "$VQA_BG_CACHE" ]; then
        text_set=voc; if [ "$DATASET" = coco14 ]; then text_set=coco; fi
        run "$PYTHON" "$repo/tools/gen_text_feats_cache.py" "$text_set" --vqa_fg_file "$VQA_FG" \
            --vqa_fg_cache_file "$VQA_FG_CACHE" --vqa_bg_file "$VQA_BG" \
            --vqa_bg_cache_file "$VQA_BG_CACHE" --clip "$CLIP"
    fi
    run "${launch[@]}" "$repo/run_sample.py" "${common[@]}" --train_list "$TRAIN_LIST" \
        --cam_weights_name "$CAM_WEIGHTS" --clip "$CLIP" --use_mask_clip "$USE_MASK_CLIP" \
        --mask_clip_weights "$MASK_CLIP_WEIGHTS" --vqa_fg_file "$VQA_FG" --vqa_bg_file "$VQA_BG" \
        --vqa_fg_cache_file "$VQA_FG_CACHE" --vqa_bg_cache_file "$VQA_BG_CACHE" \
        --clims_batch_size "$BATCH_SIZE" --clims_num_epoches "$EPOCHS" \
        --clims_learning_rate "$LR" --hyper "$HYPER" --cam_crop_size "$CROP_SIZE" \
        --nce_t 0.7 --mask_adapter_alpha 0.1 --train_qa_clims_pass True
fi

run "${launch[@]}" "$repo/run_sample.py" "${common[@]}" --infer_list "$INFER_LIST" \
    --cam_scales "$CAM_SCALES" --make_clims_pass True

run "$PYTHON" "$repo/run_sample.py" "${common[@]}" --chainer_eval_set "$EVAL_SET" \
    --cam_eval_thres 0.15 --eval_cam_best True --eval_cam_pass True
