# Sourced by the run_*.sh flows: sets $repo, the dataset arguments ${data[@]}
# (--dataset $DATASET and its root flag from the dataset registry, valued by the
# variable of that flag's name in capitals: VOC12_ROOT, MSCOCO_ROOT, DATA_ROOT), the launcher
# ${launch[@]} (torchrun when NGPU > 1), `run`, which executes a command, or
# with DRY_RUN=1 only prints it (one line, shell-quoted, full arguments), and
# `python_defaults`, which fills the flow's settings from run_sample.py.
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRY_RUN=${DRY_RUN:-0}
root_flag=$("$PYTHON" "$repo/run_sample.py" --print_root_flag "$DATASET")
root_variable=${root_flag^^}
data=(--dataset "$DATASET" "--$root_flag" "${!root_variable:-}")
if [ "$NGPU" -gt 1 ]; then
    launch=("$PYTHON" -m torch.distributed.run --nproc_per_node "$NGPU")
else
    launch=("$PYTHON")
fi

# python_defaults VAR=flag ...: every VAR that is unset or empty takes the value
# run_sample.py uses for --flag on $DATASET (per-dataset defaults of
# data/registry.py included), read once with run_sample.py --print_defaults,
# so the flows never repeat a Python default (lists come comma-separated).
python_defaults() {
    local pair var printed values=() i=0 flags=()
    for pair in "$@"; do flags+=("${pair#*=}"); done
    printed=$("$PYTHON" "$repo/run_sample.py" --dataset "$DATASET" --print_defaults "${flags[@]}")
    mapfile -t values <<< "$printed"
    for pair in "$@"; do
        var=${pair%%=*}
        if [ -z "${!var:-}" ]; then printf -v "$var" '%s' "${values[i]}"; fi
        i=$((i + 1))
    done
}

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
