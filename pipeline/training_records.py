"""Provenance records of the four training stages (docs/formats.md#provenance-records):
what each trained from, so that a resumed or reused training matches its inputs."""
from net.clip_models import resolve_clip_file
from pipeline import provenance
from pipeline.paths import in_work_space


def train_cam_record(args, source, ids):
    """The training list with its labels, the ImageNet weights, the recipe flags."""
    return provenance.stage_record(
        'train_cam', args, lists={'train_list': provenance.list_sha256(ids, source)},
        files={'imagenet_weights': args.imagenet_weights})


def train_qa_clims_record(args, source, ids):
    """The training list and labels, the initial weights, CLIP, the VQA answers and their
    text features, the recipe flags."""
    clip_file = args.mask_clip_weights if args.use_mask_clip else resolve_clip_file(
        args.clip_weights or args.clip)
    initial = in_work_space(args.work_space, args.cam_weights_name)
    files = {'cam_weights_name': initial, 'clip': clip_file}
    for flag in ('vqa_fg_file', 'vqa_bg_file', 'vqa_fg_cache_file', 'vqa_bg_cache_file'):
        files[flag] = in_work_space(args.work_space, getattr(args, flag))
    return provenance.stage_record(
        'train_qa_clims', args, lists={'train_list': provenance.list_sha256(ids, source)},
        files=files, upstream={'cam_weights_name': provenance.weights_record(initial)})


def train_irn_record(args, source, ids):
    """The training and inference lists, the backbone weights, the confident-region labels."""
    backbone = ({'irn_backbone_weights': in_work_space(args.work_space, args.irn_backbone_weights)}
                if args.irn_backbone_weights else {'imagenet_weights': args.imagenet_weights})
    return provenance.stage_record(
        'train_irn', args, files=backbone,
        lists={'train_list': provenance.list_sha256(ids),
               'infer_list': provenance.list_sha256(source.ids(args.infer_list))},
        upstream={'ir_label': provenance.folder_record(
            in_work_space(args.work_space, args.ir_label_out_dir))})


def train_seg_record(args, ids, label_dir):
    """The training list, the pseudo masks (their record; none for the ground truth in
    ``label_dir`` None), the backbone weights, the recipe flags."""
    return provenance.stage_record(
        'train_seg', args, lists={'seg_train_list': provenance.list_sha256(ids)},
        files={'seg_backbone_weights': args.seg_backbone_weights},
        upstream={'seg_label_dir': label_dir and provenance.folder_record(label_dir)})
