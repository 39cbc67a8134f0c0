"""Where a stage reads and writes, from the command-line arguments."""
import os


def in_work_space(args, name):
    """A bare file/folder name lives in ``--work_space``; a path is used as given."""
    if os.path.isabs(name) or os.sep in name or '/' in name:
        return name
    return os.path.join(args.work_space, name)


def cam_weights_path(args):
    return in_work_space(args, args.cam_weights_name)


def clims_weights_path(args):
    return in_work_space(args, args.clims_weights_name)


def cam_out_dir(args):
    return in_work_space(args, args.cam_out_dir)


def train_state_path(weights_path):
    """Resumable training state (model, optimiser, schedule, epoch) beside the weights."""
    return os.path.splitext(weights_path)[0] + '.train_state.pt'
