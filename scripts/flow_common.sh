# Sourced by the run_*.sh flows: sets $repo, the dataset arguments ${data[@]}
# (DATASET=voc12 with VOC12_ROOT, or coco14 with MSCOCO_ROOT), the launcher
# ${launch[@]} (torchrun when NGPU > 1) and `run`, which executes a command,
# or with DRY_RUN=1 only prints it (one line, shell-quoted, full arguments).
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRY_RUN=${DRY_RUN:-0}
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

run() {
    if [ "$DRY_RUN" = 1 ]; then
        local arg words=()
        for arg in "$@"; do
            if [[ $arg =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then words+=("$arg"); else words+=("${arg@Q}"); fi
        done
        echo "${words[*]}"
    else
        "$@"
    fi
}
