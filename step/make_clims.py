"""Multi-scale + flip CAMs of the QA-CLIMS network (docs/method.md#multi-scale-cams); same
outputs as :mod:`step.make_cam`, from ``--clims_weights_name``."""
from net.checkpoint import load_weights
from net.registry import cam_network
from pipeline.paths import in_work_space
from pipeline.stage import build_source
from step.make_cam import cams_record, write_cams


def run(args):
    weights = in_work_space(args.work_space, args.clims_weights_name)
    n_classes = build_source(args).n_classes
    model = load_weights(cam_network(args.cam_network).clims_cam(n_classes), weights)
    write_cams(args, model, in_work_space(args.work_space, args.cam_out_dir), 'make_clims',
               cams_record(args, 'make_clims', 'clims_weights_name', weights))
