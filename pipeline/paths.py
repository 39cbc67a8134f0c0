"""Where a stage reads and writes (docs/formats.md): output names relative to the work
space, and the files kept beside a weights file."""
import os


def in_work_space(work_space, name):
    """A bare file/folder name lives in ``work_space``; a path is used as given."""
    if os.path.isabs(name) or os.sep in name or '/' in name:
        return name
    return os.path.join(work_space, name)


def train_state_path(weights_path):
    """Resumable training state (model, optimiser, schedule, epoch) beside the weights."""
    return os.path.splitext(weights_path)[0] + '.train_state.pt'
