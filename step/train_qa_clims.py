"""QA-CLIMS training (docs/method.md#qa-clims-training).

The CAM network (initialised from the baseline weights, ``res50_cam.pth``
layout too) is trained against a frozen (mask-adapted) CLIP with the VQA
answers as foreground and background text (:mod:`pipeline.qa_clims_inputs`):
``loss = s * (h0 * L_FRC + h1 * L_BRC) + h2 * L_REG`` (``--hyper``), batched
over every instance of a batch (:mod:`net.rtc_objective`), with the
contrastive sums scaled by s = --clims_loss_ref_batch / images per process so
that any number of processes gives the gradient of the reference's 2 GPUs x 4
images (:func:`net.rtc_objective.contrastive_scale`). SGD with the
reference's effective settings and poly schedule, trained by
:class:`pipeline.engine.Training`.
"""
from data.loaders import ClassificationDataset
from misc.torchutils import reference_poly_sgd
from net.checkpoint import load_weights
from net.registry import cam_network
from net.rtc_objective import contrastive_scale, qa_clims_losses
from pipeline.engine import start
from pipeline.paths import in_work_space
from pipeline.qa_clims_inputs import objective_config, text_bank_for, training_clip
from pipeline.training_records import train_qa_clims_record

LOGGED_TERMS = ('loss', 'L_FRC', 'L_BRC', 'L_REG')


def build_training(args, n_classes, steps_per_epoch, device):
    """(model, optimizer, scheduler): the ``--cam_network``'s QA-CLIMS network from the
    baseline CAM weights, SGD with the backbone at --clims_learning_rate and the
    classifier at 10x (conv1/bn1 frozen, in no group), the reference's poly schedule over
    every step of the run."""
    model = load_weights(cam_network(args.cam_network).clims(n_classes),
                         in_work_space(args.work_space, args.cam_weights_name)).to(device)
    backbone, head = model.trainable_parameters()
    optimizer, scheduler = reference_poly_sgd(
        [{'params': backbone, 'lr': args.clims_learning_rate},
         {'params': head, 'lr': 10 * args.clims_learning_rate}],
        args.clims_weight_decay, steps_per_epoch * args.clims_num_epoches,
        fix_momentum_quirk=args.fix_momentum_quirk)
    return model, optimizer, scheduler


def forward_terms(forward, pack, clip_model, bank, cfg):
    """(maps x, loss terms of :func:`net.rtc_objective.qa_clims_losses`) of one batch."""
    x = forward(pack['img'])
    return x, qa_clims_losses(x.float(), pack['img'], pack['label'], pack['name'], clip_model,
                              bank, cfg)


def run(args):
    training, source, ids = start('train_qa_clims', args, args.train_list)
    device = training.device
    clip_model = training_clip(args, device)
    bank = text_bank_for(source, ids, clip_model, args, device)
    cfg = objective_config(args, clip_model)
    dataset = ClassificationDataset(source, ids, resize_long=args.clims_resize_long, hor_flip=True,
                                    crop_size=args.clims_crop_size, crop_method='random')
    steps = training.plan(dataset, args.clims_batch_size, '--clims_batch_size')
    model, optimizer, scheduler = build_training(args, source.n_classes, steps, device)

    def batch_loss(forward, pack):
        terms = forward_terms(forward, pack, clip_model, bank, cfg)[1]
        return {k: terms[k] for k in LOGGED_TERMS}
    training.fit(model, optimizer, scheduler, batch_loss, in_work_space(args.work_space, args.clims_weights_name),
                 train_qa_clims_record(args, source, ids), steps * args.clims_num_epoches,
                 describe=', contrastive sums x %g (--clims_loss_ref_batch %s / %d), %d pairs, '
                 'lr %g, hyper %s, CLIP %s (%s, input %d)' % (
                     contrastive_scale(training.batch, cfg.contrastive_ref_batch),
                     args.clims_loss_ref_batch, training.batch, len(bank.pair_index),
                     args.clims_learning_rate, args.hyper, clip_model.name,
                     'mask-adapted' if args.use_mask_clip else 'plain', cfg.clip_input_size))
