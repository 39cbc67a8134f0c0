"""What QA-CLIMS trains against (docs/method.md#qa-clims-training): the frozen CLIP, the
text features of every (image, class) of the training list and the objective's settings."""
import torch

from misc.torchutils import FLOAT_DTYPES
from net.clip_models import load_clip, read_clip_state_dict, resolve_clip_file, weights_checksum
from net.rtc_objective import ObjectiveConfig
from pipeline.paths import in_work_space
from vqa.results import load_results
from vqa.text_bank import build_text_bank, require_vqa_entries, training_pairs
from vqa.text_features import TextFeatureCache



def training_clip(args, device):
    """The frozen image/text encoder: OVSeg's mask-adapted CLIP or plain CLIP."""
    dtype = FLOAT_DTYPES[args.clip_dtype]
    if args.use_mask_clip:
        if not args.mask_clip_weights:
            raise ValueError('--use_mask_clip True needs --mask_clip_weights PATH (OVSeg\'s '
                             'ovseg_swinbase_vitL14_ft_mpt.pth); or pass --use_mask_clip False')
        return load_clip(args.mask_clip_weights, device, dtype)
    return load_clip(args.clip_weights or args.clip, device, dtype)


def answer_caches(args):
    """FG/BG answer caches, refused when made with other CLIP weights than --clip."""
    paths = [in_work_space(args.work_space, p) for p in (args.vqa_fg_cache_file, args.vqa_bg_cache_file)]
    caches = [TextFeatureCache.load(p) for p in paths]
    checksum = weights_checksum(read_clip_state_dict(resolve_clip_file(
        args.clip_weights or args.clip)))
    for cache, path in zip(caches, paths):
        cache.check_identity(args.clip, checksum, path)
    return caches


def text_bank_for(source, ids, clip_model, args, device):
    """Text features of every (image, present class) of the training list, checked up front."""
    class_names = source.class_names
    fg_path, bg_path = in_work_space(args.work_space, args.vqa_fg_file), in_work_space(args.work_space, args.vqa_bg_file)
    fg_results = load_results(fg_path, set(class_names))
    bg_results = load_results(bg_path, set(class_names))
    pairs = training_pairs(source, ids)
    require_vqa_entries(fg_results, bg_results, pairs, class_names, fg_path, bg_path)
    fg_cache, bg_cache = answer_caches(args)
    with torch.no_grad():
        label_features = clip_model.encode_prompts(list(class_names), fg_cache.prompt).cpu()
    bank = build_text_bank(pairs, class_names, label_features, fg_results, bg_results,
                           fg_cache, bg_cache, source.class_aliases)
    return bank.to(device)


def objective_config(args, clip_model):
    """The settings of :func:`net.rtc_objective.qa_clims_losses` from the flags."""
    return ObjectiveConfig(hyper=tuple(float(h) for h in args.hyper.split(',')),
                           nce_t=args.nce_t, fat_alpha=args.mask_adapter_alpha,
                           use_mask_clip=args.use_mask_clip,
                           clip_input_size=clip_model.input_resolution,
                           contrastive_ref_batch=args.clims_loss_ref_batch)
