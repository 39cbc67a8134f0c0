"""Multi-scale + flip CAMs of the QA-CLIMS network (docs/method.md#multi-scale-cams); same
outputs as :mod:`step.make_cam`, from ``--clims_weights_name``."""
from data import build_source
from net.checkpoint import load_weights
from net.registry import cam_network
from pipeline.paths import cam_out_dir, clims_weights_path
from step.make_cam import cams_record, write_cams


def run(args):
    weights = clims_weights_path(args)
    n_classes = build_source(args).n_classes
    model = load_weights(cam_network(args.cam_network).clims_cam(n_classes), weights)
    write_cams(args, model, cam_out_dir(args), 'make_clims',
               cams_record(args, 'make_clims', 'clims_weights_name', weights))
