"""QA-CLIMS training (docs/method.md#qa-clims-training).

The CAM network (initialised from the baseline weights, ``res50_cam.pth``
layout too) is trained against a frozen (mask-adapted) CLIP with the VQA
answers as foreground and background text:
``loss = s * (h0 * L_FRC + h1 * L_BRC) + h2 * L_REG`` (``--hyper``), batched
over every instance of a batch (:mod:`net.rtc_objective`), with the
contrastive sums scaled by s = --clims_loss_ref_batch / images per process so
that any number of processes gives the gradient of the reference's 2 GPUs x 4
images (:func:`net.rtc_objective.contrastive_scale`). SGD with the
reference's effective settings and poly schedule; a resumable state after
each epoch; DDP + SyncBatchNorm under torchrun; loss terms logged (and to
TensorBoard when it is installed).
"""
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from data.loaders import ClassificationDataset
from misc import dist
from misc.logutil import get_logger
from misc.torchutils import FLOAT_DTYPES, reference_poly_sgd
from net.checkpoint import load_weights
from net.clip_models import load_clip, read_clip_state_dict, resolve_clip_file, weights_checksum
from net.registry import cam_network
from net.rtc_objective import ObjectiveConfig, contrastive_scale, qa_clims_losses
from pipeline import provenance
from pipeline.paths import in_work_space, train_state_path
from pipeline.stage import prepare
from pipeline.training import autocast_context, checkpoint_epoch, epoch_loader, load_train_state, \
    per_rank_batch, tensorboard_writer, write_final_weights
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


def training_record(args, source, ids):
    """Provenance of the training: list and labels, initial weights, CLIP, VQA answers and
    their text features, recipe flags."""
    clip_file = args.mask_clip_weights if args.use_mask_clip else resolve_clip_file(
        args.clip_weights or args.clip)
    initial = in_work_space(args.work_space, args.cam_weights_name)
    files = {'cam_weights_name': initial, 'clip': clip_file}
    for flag in ('vqa_fg_file', 'vqa_bg_file', 'vqa_fg_cache_file', 'vqa_bg_cache_file'):
        files[flag] = in_work_space(args.work_space, getattr(args, flag))
    return provenance.stage_record(
        'train_qa_clims', args, lists={'train_list': provenance.list_sha256(ids, source)},
        files=files, upstream={'cam_weights_name': provenance.weights_record(initial)})


def objective_config(args, clip_model):
    return ObjectiveConfig(hyper=tuple(float(h) for h in args.hyper.split(',')),
                           nce_t=args.nce_t, fat_alpha=args.mask_adapter_alpha,
                           use_mask_clip=args.use_mask_clip,
                           clip_input_size=clip_model.input_resolution,
                           contrastive_ref_batch=args.clims_loss_ref_batch)


def build_model(args, n_classes, device):
    """The QA-CLIMS network of ``--cam_network`` initialised from the baseline CAM
    weights; SyncBatchNorm under DDP on GPUs.

    torch's SyncBatchNorm runs on CUDA only: DDP on CPU processes (gloo)
    keeps per-process batch statistics, and says so.
    """
    model = load_weights(cam_network(args.cam_network).clims(n_classes),
                         in_work_space(args.work_space, args.cam_weights_name)).to(device)
    if dist.world_size() > 1:
        if device.type == 'cuda':
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            get_logger().warning('WARNING: DDP on CPU: BatchNorm statistics are per process '
                                 '(SyncBatchNorm needs CUDA)')
    return model


def build_training(args, n_classes, steps_per_epoch, device):
    """(model, optimizer, scheduler): the network, SGD with the backbone at
    --clims_learning_rate and the classifier at 10x (conv1/bn1 frozen, in no
    group), the reference's poly schedule over every step of the run."""
    model = build_model(args, n_classes, device)
    backbone, head = model.trainable_parameters()
    optimizer, scheduler = reference_poly_sgd(
        [{'params': backbone, 'lr': args.clims_learning_rate},
         {'params': head, 'lr': 10 * args.clims_learning_rate}],
        args.clims_weight_decay, steps_per_epoch * args.clims_num_epoches,
        fix_momentum_quirk=args.fix_momentum_quirk)
    return model, optimizer, scheduler


def grad_scaler(args, device):
    """Loss scaling for fp16 autocast on CUDA; a no-op otherwise."""
    return torch.amp.GradScaler(device.type, enabled=args.amp and device.type == 'cuda')


def forward_terms(model, pack, clip_model, bank, cfg, device, amp):
    """(maps x, loss terms of :func:`net.rtc_objective.qa_clims_losses`) of one batch."""
    img = pack['img'].to(device, non_blocking=True)
    with autocast_context(device, amp):
        x = model(img)
    return x, qa_clims_losses(x.float(), img, pack['label'].to(device), pack['name'],
                              clip_model, bank, cfg)


def apply_gradients(loss, optimizer, scheduler, scaler):
    """Backward of ``loss``, one optimiser step and one schedule step."""
    optimizer.zero_grad()
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()


def train_step(model, pack, clip_model, bank, cfg, optimizer, scheduler, scaler, device, amp):
    """One optimisation step; returns the loss terms (detached floats)."""
    _, terms = forward_terms(model, pack, clip_model, bank, cfg, device, amp)
    apply_gradients(terms['loss'], optimizer, scheduler, scaler)
    return {k: terms[k].item() for k in ('loss', 'L_FRC', 'L_BRC', 'L_REG')}


def run(args):
    log = get_logger()
    device, source, ids = prepare(args, args.train_list, seed=True)
    clip_model = training_clip(args, device)
    bank = text_bank_for(source, ids, clip_model, args, device)
    cfg = objective_config(args, clip_model)
    dataset = ClassificationDataset(source, ids, resize_long=args.clims_resize_long, hor_flip=True,
                                    crop_size=args.clims_crop_size, crop_method='random')
    batch = per_rank_batch(args.clims_batch_size, '--clims_batch_size')
    steps_per_epoch = len(epoch_loader(dataset, batch, args, 0, True, True))
    if steps_per_epoch == 0:
        raise ValueError('%s has %d images, fewer than one batch of %d'
                         % (args.train_list, len(dataset), args.clims_batch_size))
    model, optimizer, scheduler = build_training(args, source.n_classes, steps_per_epoch, device)
    weights_path = in_work_space(args.work_space, args.clims_weights_name)
    state_path = train_state_path(weights_path)
    record = training_record(args, source, ids)
    provenance.claim_train_state(state_path, record, args.overwrite)
    start_epoch = load_train_state(state_path, model, optimizer, scheduler, device)
    if start_epoch:
        log.info('train_qa_clims: resuming after epoch %d from %s', start_epoch, state_path)
    net = DistributedDataParallel(model) if dist.world_size() > 1 else model
    scaler = grad_scaler(args, device)
    writer = tensorboard_writer(args)
    log.info('train_qa_clims: %d images, %d pairs, %d steps/epoch x %d epochs, batch %d (%d per '
             'process), contrastive sums x %g (--clims_loss_ref_batch %s / %d), lr %g, hyper %s, '
             'CLIP %s (%s, input %d)', len(dataset), len(bank.pair_index), steps_per_epoch,
             args.clims_num_epoches, args.clims_batch_size, batch,
             contrastive_scale(batch, cfg.contrastive_ref_batch), args.clims_loss_ref_batch,
             batch, args.clims_learning_rate, args.hyper, clip_model.name,
             'mask-adapted' if args.use_mask_clip else 'plain', cfg.clip_input_size)
    net.train()
    for epoch in range(start_epoch, args.clims_num_epoches):
        bar = tqdm(epoch_loader(dataset, batch, args, epoch, True, True),
                   desc='train_qa_clims %d/%d' % (epoch + 1, args.clims_num_epoches),
                   disable=not dist.is_main_process(), dynamic_ncols=True)
        for step, pack in enumerate(bar):
            terms = train_step(net, pack, clip_model, bank, cfg, optimizer, scheduler, scaler,
                               device, args.amp)
            bar.set_postfix({k: '%.4f' % v for k, v in terms.items()})
            if writer is not None:
                for key, value in terms.items():
                    writer.add_scalar('train/' + key, value, epoch * steps_per_epoch + step)
        log.info('train_qa_clims epoch %d: %s', epoch + 1,
                 ', '.join('%s %.4f' % (k, v) for k, v in terms.items()))
        checkpoint_epoch(state_path, model, optimizer, scheduler, epoch + 1)
    write_final_weights(model, weights_path, 'train_qa_clims')
    provenance.write_weights_record(weights_path, record)
