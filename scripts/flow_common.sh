# Sourced by the run_*.sh flows: sets $repo, the dataset arguments ${data[@]}
# (DATASET=voc12 with VOC12_ROOT, or coco14 with MSCOCO_ROOT) and the
# launcher ${launch[@]} (torchrun when NGPU > 1).
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "$DATASET" = coco14 ]; then
    data=(--dataset coco14 --mscoco_root "$MSCOCO_ROOT")
else
    data=(--voc12_root "$VOC12_ROOT")
fi
if [ "$NGPU" -gt 1 ]; then
    launch=("$PYTHON" -m torch.distributed.run --nproc_per_node "$NGPU")
else
    launch=("$PYTHON")
fi
