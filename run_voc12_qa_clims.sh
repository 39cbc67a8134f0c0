#!/usr/bin/env bash
# QA-CLIMS CAMs on PASCAL VOC 2012 and their evaluation (reference flow of
# run_voc12_qa_clims.sh: make CAMs with the QA-CLIMS weights, evaluate them on
# the train split with the threshold sweep).
#
# The QA-CLIMS training stage of this flow is issue #3; until it lands, this
# script reproduces the authors' CAMs and CAM mIoU from their released
# res50_qa_clims.pth.
#
# Set the variables below (or export them) and run:  bash run_voc12_qa_clims.sh
set -euo pipefail

VOC12_ROOT=${VOC12_ROOT:-data/VOCdevkit/VOC2012}   # folder with JPEGImages, Annotations, ImageSets
WORK_SPACE=${WORK_SPACE:-work_space/qa_clims_voc12}
CLIMS_WEIGHTS=${CLIMS_WEIGHTS:-res50_qa_clims.pth}  # authors' file or ours (.safetensors)
NGPU=${NGPU:-1}                                     # processes (GPUs) for CAM inference
NUM_WORKERS=${NUM_WORKERS:-8}
PYTHON=${PYTHON:-python}

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ "$NGPU" -gt 1 ]; then
    launch=("$PYTHON" -m torch.distributed.run --nproc_per_node "$NGPU")
else
    launch=("$PYTHON")
fi

"${launch[@]}" "$repo/run_sample.py" \
    --voc12_root "$VOC12_ROOT" --work_space "$WORK_SPACE" --num_workers "$NUM_WORKERS" \
    --infer_list train --cam_scales 1.0,0.5,1.5,2.0 \
    --clims_weights_name "$CLIMS_WEIGHTS" --cam_out_dir cams \
    --make_clims_pass True

"$PYTHON" "$repo/run_sample.py" \
    --voc12_root "$VOC12_ROOT" --work_space "$WORK_SPACE" --cam_out_dir cams \
    --chainer_eval_set train --cam_eval_thres 0.15 --eval_cam_best True \
    --eval_cam_pass True
