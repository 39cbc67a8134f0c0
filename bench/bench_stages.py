"""Every stage's time per image (per iteration for training) and peak memory at VOC
size, and the wall time of the whole VOC recipe projected from them.

    python bench/bench_stages.py [--images 3] [--repeats 2] [--threads N]
        [--devices cpu,cuda] [--quick]

Data: a synthetic VOC-layout set drawn by ``tools/make_demo_voc.py`` (images of
375..500 pixels a side, 1-3 of the 20 classes each, masks, XML labels and VQA
answers). Networks: the stages' own, full size, with random deterministic
weights (ResNet-50 for the CAM networks and IRNet, DeepLab-v2 ResNet-101);
the VQA model is the tiny random BLIP of ``tools/make_tiny_blip.py`` and CLIP
the tiny random one of ``tools/make_tiny_clip.py`` (the real ones cannot be
downloaded here), so the rows that use them are lower bounds and say so.
Upstream files a stage reads are synthesised from the masks so that every
stage runs on its own: CAMs = the blurred class masks, confident regions and
pseudo masks = the masks.

Each stage runs the functions its ``step/`` module runs per image or per
iteration, with the recipe's settings (``run_sample.py``'s VOC defaults:
scales, crops, batches, thresholds), once to warm up and then on
``--images`` images (``--repeats`` iterations for training); the median is
the time per unit. Peak memory is the process's peak resident set during
the stage (Linux VmHWM, reset before each stage; pool workers added), and
on a GPU the peak of allocated CUDA memory.

The projection multiplies each time per unit by its count in the VOC
recipe (docs/recipe.md: train_aug 10,582 images, train 1,464, val 1,449;
epochs, batches and iterations from run_sample.py's defaults) and sums the
stages the flows run; ``--quick`` runs tiny images and batches (a test of
the script, not a measurement).
"""
import argparse
import dataclasses
import gc
import json
import multiprocessing
import os
import platform
import re
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

VOC_TRAIN_AUG, VOC_TRAIN, VOC_VAL = 10582, 1464, 1449


@dataclasses.dataclass
class Row:
    """One measured stage on one device."""
    stage: str
    device: str
    unit: str                       # 'image' or 'iteration'
    seconds: list
    rss_before_mb: float
    peak_rss_mb: float
    peak_gpu_mb: float = None
    count: int = 0                  # units in the VOC recipe
    group: str = 'flows'            # 'flows', 'baseline' or 'variant'
    note: str = ''

    @property
    def per_unit(self):
        """Median seconds per unit, rounded to the 4 significant digits printed."""
        return float('%.4g' % statistics.median(self.seconds))

    @property
    def projected(self):
        return self.per_unit * self.count


@dataclasses.dataclass
class Settings:
    """Sizes of a run: VOC's, or tiny ones for --quick."""
    quick: bool
    images: int
    repeats: int
    min_side: int = 375
    max_side: int = 500
    overrides: list = dataclasses.field(default_factory=list)


def quick_settings():
    return Settings(quick=True, images=1, repeats=1, min_side=56, max_side=72, overrides=[
        '--cam_batch_size', '2', '--cam_crop_size', '64', '--clims_batch_size', '2',
        '--clims_crop_size', '64',
        '--irn_batch_size', '2', '--irn_crop_size', '80', '--seg_batch_size', '2',
        '--seg_crop_size', '64', '--cam_scales', '1.0,0.5', '--seg_eval_scales', '1.0,0.5',
        '--vqa_image_size', '32'])


# ---------------------------------------------------------------- the machine

def read_first(path, pattern):
    try:
        with open(path) as f:
            match = re.search(pattern, f.read(), re.M)
    except OSError:
        return None
    return match.group(1) if match else None


def cpu_flags():
    flags = read_first('/proc/cpuinfo', r'^flags\s*:\s*(.*)$')
    return set(flags.split()) if flags else set()


def machine_description(devices):
    """One line naming the CPU, cores, RAM, torch and bf16 support (and the GPUs used)."""
    from step.make_cam import cpu_has_bf16_kernels
    model = read_first('/proc/cpuinfo', r'^model name\s*:\s*(.*)$') or platform.processor()
    mem_kb = read_first('/proc/meminfo', r'^MemTotal:\s*(\d+)')
    flags = cpu_flags()
    bf16_flags = sorted(flags & {'avx512_bf16', 'amx_bf16', 'amx_tile'}) or ['none']
    simd = 'AVX-512' if 'avx512f' in flags else 'AVX2' if 'avx2' in flags else 'no AVX2'
    text = ('%s, %d cores, %.0f GB RAM, %s%s; bf16 instructions: %s; oneDNN bf16 kernels: %s; '
            'torch %s, %d threads'
            % (model, os.cpu_count() or 1, int(mem_kb) / 2**20 if mem_kb else float('nan'),
               simd, ' + FMA' if 'fma' in flags else '', ', '.join(bf16_flags),
               'yes' if cpu_has_bf16_kernels() else 'no', torch.__version__,
               torch.get_num_threads()))
    for name in devices:
        if name.startswith('cuda'):
            text += '; GPU %s' % torch.cuda.get_device_name(torch.device(name))
    return text


# ---------------------------------------------------------------- measuring

def peak_rss_mb(pid='self'):
    """Peak resident set (VmHWM) of a process in MB."""
    kb = read_first('/proc/%s/status' % pid, r'^VmHWM:\s*(\d+)')
    return int(kb) / 1024 if kb else float('nan')


def rss_mb():
    """Resident set (VmRSS) of this process in MB."""
    kb = read_first('/proc/self/status', r'^VmRSS:\s*(\d+)')
    return int(kb) / 1024 if kb else float('nan')


def reset_peak_rss():
    """Start a new VmHWM peak at the current resident set (Linux >= 4.0)."""
    gc.collect()
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
    except OSError:
        pass


class StageMeter:
    """Peak host and GPU memory around one stage's measurement."""

    def __init__(self, device):
        self.device = device
        self.extra_rss_mb = 0.0

    def __enter__(self):
        reset_peak_rss()
        self.rss_before_mb = rss_mb()
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc):
        self.peak_rss_mb = peak_rss_mb() + self.extra_rss_mb
        self.peak_gpu_mb = (torch.cuda.max_memory_allocated(self.device) / 2**20
                            if self.device.type == 'cuda' else None)
        return False


def timed_calls(fn, items, device):
    """fn(item) for each item after one warm-up call on the first; seconds of each."""
    fn(items[0])
    seconds = []
    for item in items:
        sync(device)
        start = time.perf_counter()
        fn(item)
        sync(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- the data

class Bench:
    """The synthetic set, the recipe's arguments and the upstream files of every stage."""

    def __init__(self, settings, tmp, irn_split=1, seg_split=1):
        import run_sample
        from pipeline.stage import build_source
        from tools.make_demo_voc import generate_demo_voc
        from tools.make_tiny_clip import write_tiny_clip
        self.settings = settings
        self.tmp = tmp
        self.irn_split, self.seg_split = irn_split, seg_split
        data = generate_demo_voc(os.path.join(tmp, 'VOC2012'), n_images=2 * settings.images + 4,
                                 seed=0, min_side=settings.min_side, max_side=settings.max_side)
        self.clip_file = write_tiny_clip(os.path.join(tmp, 'tiny_clip.safetensors'))
        ws = os.path.join(tmp, 'ws')
        self.args = run_sample.build_parser().parse_args([
            '--voc12_root', data['root'], '--work_space', ws, '--device', 'cpu',
            '--clip', self.clip_file, '--mask_clip_weights', self.clip_file,
            '--vqa_fg_file', os.path.join(data['root'], 'vqa_fg.json'),
            '--vqa_bg_file', os.path.join(data['root'], 'vqa_bg.json'),
            '--vqa_fg_cache_file', os.path.join(ws, 'vqa_fg_cache.safetensors'),
            '--vqa_bg_cache_file', os.path.join(ws, 'vqa_bg_cache.safetensors'),
            '--train_list', 'train', '--infer_list', 'train', '--chainer_eval_set', 'train',
            '--seg_train_list', 'train', '--seg_label_dir', 'gt']
            + settings.overrides)
        run_sample.resolve_args(self.args)
        os.makedirs(ws, exist_ok=True)
        self.source = build_source(self.args)
        self.train_ids = data['train']
        self.ids = data['train'][:settings.images]
        self.defaults = run_sample.build_parser().parse_args([])
        run_sample.resolve_args(self.defaults)
        self.write_upstream_files()

    def write_upstream_files(self):
        """CAMs (blurred class masks), confident regions and pseudo masks (the masks)."""
        from misc.io import save_npz, save_png
        from pipeline.paths import in_work_space
        cam_dir = in_work_space(self.args.work_space, self.args.cam_out_dir)
        label_dirs = [in_work_space(self.args.work_space, self.args.ir_label_out_dir),
                      in_work_space(self.args.work_space, self.args.sem_seg_out_dir)]
        for folder in [cam_dir] + label_dirs:
            os.makedirs(folder, exist_ok=True)
        for image_id in self.train_ids:
            mask = self.source.read_mask(image_id)
            keys = np.asarray(self.source.image_label_ids(image_id), np.int64)
            high_res = blurred_class_maps(mask, keys)
            strided = ((mask.shape[0] + 3) // 4, (mask.shape[1] + 3) // 4)
            cam = F.interpolate(torch.from_numpy(high_res)[None], strided, mode='bilinear',
                                align_corners=False)[0].numpy()
            save_npz(os.path.join(cam_dir, image_id + '.npz'), keys=keys, cam=cam,
                     high_res=high_res)
            for folder in label_dirs:
                save_png(os.path.join(folder, image_id + '.png'), mask)


def blurred_class_maps(mask, keys, radius=15):
    """float32 [K, H, W]: each present class's mask box-blurred, max 1."""
    planes = torch.from_numpy(np.stack([(mask == k + 1) for k in keys]).astype(np.float32))
    blurred = F.avg_pool2d(planes[None], 2 * radius + 1, stride=1, padding=radius,
                           count_include_pad=False)[0]
    return (blurred / blurred.amax(dim=(1, 2), keepdim=True).clamp_min(1e-5)).numpy()


def collate(items):
    from torch.utils.data import default_collate
    return default_collate(items)


# ---------------------------------------------------------------- the stages

def measure_vqa(bench, device):
    """step.vqa.answer_images over the images (tiny BLIP), per image."""
    from step.vqa import answer_images
    from tools.make_tiny_blip import write_tiny_blip
    from vqa.blip import BlipVQA
    from vqa.lemmatize import make_lemmatizer
    a = bench.args
    model = BlipVQA(write_tiny_blip(os.path.join(bench.tmp, 'tiny_blip')), device, torch.float32, a.vqa_image_size, a.vqa_num_beams, a.vqa_max_length,
                    a.vqa_min_length, a.vqa_question_bos)
    _, lemmatize = make_lemmatizer(a.vqa_lemmatizer)
    parts = os.path.join(bench.tmp, 'vqa_parts')
    os.makedirs(parts, exist_ok=True)
    return timed_calls(lambda i: answer_images(model, bench.source, [i], parts, lemmatize,
                                               model.settings(), 1, False), bench.ids, device)


def measure_caches(bench, device):
    """The text-feature caches of one image's FG and BG answers (tiny CLIP), per image."""
    from net.clip_models import load_clip, tokenize
    from tools.gen_text_feats_cache import class_names_and_aliases, read_results
    from vqa.text_features import build_cache
    a = bench.args
    model = load_clip(bench.clip_file, device=device)
    class_names, aliases = class_names_and_aliases('voc12', None)
    results = {kind: read_results(path, class_names, False)
               for kind, path in (('fg', a.vqa_fg_file), ('bg', a.vqa_bg_file))}

    def one_image(image_id):
        for kind, res in results.items():
            build_cache({image_id: res[image_id]}, kind,
                        lambda prompts: model.encode_text(tokenize(prompts).to(device)),
                        a.clip, model.checksum, aliases)
    return timed_calls(one_image, bench.ids, device)


def training_batches(dataset, batch, repeats, seed=0):
    """``repeats`` + 1 batches of ``batch`` dataset items (with replacement)."""
    rng = np.random.default_rng(seed)
    return [collate([dataset[int(k)] for k in rng.integers(0, len(dataset), batch)])
            for _ in range(repeats + 1)]


def measure_train_cam(bench, device):
    """One engine step of step.train_cam (its batch_loss) on --cam_batch_size crops, per
    iteration."""
    from data.loaders import ClassificationDataset
    from pipeline.engine import Optimiser
    from step.train_cam import batch_loss, build_training
    a = bench.args
    dataset = ClassificationDataset(bench.source, bench.train_ids, resize_long=a.cam_resize_long,
                                    hor_flip=True, crop_size=a.cam_crop_size,
                                    crop_method='random')
    batches = training_batches(dataset, a.cam_batch_size, bench.settings.repeats)
    model, optimizer, scheduler = build_training(a, bench.source.n_classes, 1000, device)
    optimiser = Optimiser(optimizer, scheduler, device)
    return timed_calls(lambda pack: optimiser.step(model, [pack], batch_loss), batches[1:], device)


def cam_packs(bench, scales):
    from data.loaders import MultiScaleDataset
    dataset = MultiScaleDataset(bench.source, bench.ids, scales)
    return [dataset[k] for k in range(len(dataset))]


def batch_of_one(item):
    """A MultiScaleDataset item as DataLoader(batch_size=1) yields it."""
    return collate([item])


def measure_cams(network_of, amp):
    """make_cam / make_clims: load the item, step.make_cam.image_cams, write the .npz."""
    def measure(bench, device):
        from data.loaders import MultiScaleDataset
        from misc.io import save_npz
        from pipeline.engine import autocast_context
        from net.resnet50_cam import InferenceCAM
        from step.make_cam import image_cams
        torch.manual_seed(0)
        network = InferenceCAM(network_of(bench.source.n_classes).eval()).to(device)
        dataset = MultiScaleDataset(bench.source, bench.ids, bench.args.cam_scales)
        out_dir = os.path.join(bench.tmp, 'cams_out')
        os.makedirs(out_dir, exist_ok=True)

        def one_image(k):
            pack = batch_of_one(dataset[k])
            with torch.inference_mode(), autocast_context(device, amp):
                keys, cam, high_res = image_cams(network, pack, device)
            save_npz(os.path.join(out_dir, pack['name'][0] + '.npz'), keys=keys, cam=cam,
                     high_res=high_res)
        return timed_calls(one_image, list(range(len(dataset))), device)
    return measure


def cam_network_of(kind):
    from net.registry import RESNET50
    return getattr(RESNET50, kind)


def measure_train_qa_clims(bench, device):
    """One engine step of step.train_qa_clims (its loss terms) on a batch of
    --clims_batch_size crops (tiny CLIP), per iteration."""
    from data.loaders import ClassificationDataset
    from net.checkpoint import save_weights
    from net.registry import RESNET50
    from pipeline.engine import Optimiser
    from pipeline.qa_clims_inputs import objective_config, text_bank_for, training_clip
    from step import train_qa_clims as stage
    from tools.gen_text_feats_cache import main as gen_text_feats_cache
    a = bench.args
    gen_text_feats_cache(['voc', '--vqa_fg_file', a.vqa_fg_file, '--vqa_bg_file', a.vqa_bg_file,
                          '--vqa_fg_cache_file', a.vqa_fg_cache_file,
                          '--vqa_bg_cache_file', a.vqa_bg_cache_file, '--clip', a.clip])
    torch.manual_seed(0)
    save_weights(RESNET50.baseline(bench.source.n_classes), os.path.join(
        a.work_space, a.cam_weights_name))
    clip_model = training_clip(a, device)
    bank = text_bank_for(bench.source, bench.train_ids, clip_model, a, device)
    cfg = objective_config(a, clip_model)
    dataset = ClassificationDataset(bench.source, bench.train_ids, resize_long=a.clims_resize_long,
                                    hor_flip=True, crop_size=a.clims_crop_size,
                                    crop_method='random')
    batches = training_batches(dataset, a.clims_batch_size, bench.settings.repeats)
    model, optimizer, scheduler = stage.build_training(a, bench.source.n_classes, 1000, device)
    model.train()
    optimiser = Optimiser(optimizer, scheduler, device)

    def batch_loss(forward, pack):
        terms = stage.forward_terms(forward, pack, clip_model, bank, cfg)[1]
        return {k: terms[k] for k in stage.LOGGED_TERMS}
    return timed_calls(lambda pack: optimiser.step(model, [pack], batch_loss), batches[1:],
                       device)


def measure_eval_cam(bench, device):
    """step.eval_cam's pass: read the CAMs and the mask, add to the sweep, per image."""
    from pipeline.stage import cam_files_of
    from step.eval_cam import accumulate, sweep_thresholds
    a = bench.args
    cam_files = cam_files_of(a)
    thresholds = sweep_thresholds(a)
    return timed_calls(lambda i: accumulate(bench.source, [i], cam_files, thresholds),
                       bench.ids, device)


def ir_label_jobs(bench):
    from pipeline.paths import in_work_space
    from pipeline.stage import cam_files_of
    a = bench.args
    out_dir = in_work_space(a.work_space, 'ir_label_bench')
    os.makedirs(out_dir, exist_ok=True)
    return [(bench.source, i, cam_files_of(a), out_dir, a.conf_fg_thres, a.conf_bg_thres)
            for i in bench.ids]


def measure_ir_label_1(bench, device):
    """step.cam_to_ir_label's per-image job (two dense CRFs), one process, per image."""
    from step.cam_to_ir_label import _label_one
    return timed_calls(_label_one, ir_label_jobs(bench), device)


def measure_ir_label_pool(workers):
    """The same jobs over a pool of ``workers`` processes as the stage runs them: wall
    time of all the images / their number (throughput), the pool already started."""
    def measure(bench, device, meter):
        from step.cam_to_ir_label import _label_one
        jobs = ir_label_jobs(bench)
        with multiprocessing.get_context('spawn').Pool(workers) as pool:
            pool.map(_label_one, jobs[:1] * workers, chunksize=1)
            seconds = []
            for _ in range(max(1, bench.settings.repeats)):
                start = time.perf_counter()
                for _ in pool.imap_unordered(_label_one, jobs):
                    pass
                seconds.append((time.perf_counter() - start) / len(jobs))
            meter.extra_rss_mb = sum(peak_rss_mb(p.pid) for p in pool._pool)
        return seconds
    measure.needs_meter = True
    return measure


def measure_train_irn(bench, device):
    """One engine step of step.train_irn (its batch_loss) on --irn_batch_size crops, per
    iteration: with ``--irn_split K`` as K accumulated micro-batches of batch / K."""
    from pipeline.engine import Optimiser
    from pipeline.paths import in_work_space
    from step.train_irn import batch_loss, build_path_index, build_training
    from wsss.path_index import AffinityDataset
    a = bench.args
    split = bench.irn_split
    path_index = build_path_index(a)
    dataset = AffinityDataset(bench.source, bench.train_ids,
                              in_work_space(a.work_space, a.ir_label_out_dir), a.irn_crop_size,
                              path_index,
                              rescale=a.irn_rescale)
    parts = training_batches(dataset, a.irn_batch_size // split,
                             (bench.settings.repeats + 1) * split - 1)
    torch.manual_seed(0)
    model, optimizer, scheduler = build_training(a, path_index, 1000, device)
    optimiser = Optimiser(optimizer, scheduler, device)

    def iteration(group):
        optimiser.step(model, group, batch_loss)
    groups = [parts[k:k + split] for k in range(0, len(parts), split)]
    return timed_calls(iteration, groups[1:], device)


def measure_make_sem_seg(bench, device):
    """step.make_sem_seg_labels' loop: edge map, random walk, PNG, per image."""
    from data.loaders import MultiScaleDataset
    from misc.io import save_png
    from net.registry import RESNET50
    from net.resnet50_irn import edge_map
    from pipeline.stage import cam_files_of
    from step.make_sem_seg_labels import pseudo_label
    a = bench.args
    torch.manual_seed(0)
    model = RESNET50.irnet().to(device).eval()
    dataset = MultiScaleDataset(bench.source, bench.ids, (1.0,))
    cam_files = cam_files_of(a)
    out_dir = os.path.join(bench.tmp, 'sem_seg_out')
    os.makedirs(out_dir, exist_ok=True)

    def one_image(k):
        pack = batch_of_one(dataset[k])
        image_id = pack['name'][0]
        size = (int(pack['size'][0]), int(pack['size'][1]))
        with torch.no_grad():
            edge = edge_map(model, pack['img'][0][0].to(device)).cpu()
            cams = cam_files.load(image_id, required=('keys', 'cam'))
            label = pseudo_label(torch.from_numpy(cams['cam']), cams['keys'], edge, size, a)
        save_png(os.path.join(out_dir, image_id + '.png'), label)
    return timed_calls(one_image, list(range(len(dataset))), device)


def measure_eval_sem_seg(bench, device):
    """step.eval_sem_seg's loop: read the mask and the pseudo mask, confusion, per image."""
    from wsss.metrics import confusion_matrix
    from pipeline.paths import in_work_space
    from step.eval_sem_seg import read_prediction
    a = bench.args
    pred_dir = in_work_space(a.work_space, a.sem_seg_out_dir)
    n_class = bench.source.n_classes + 1

    def one_image(image_id):
        gt = bench.source.read_mask(image_id)
        pred = read_prediction(os.path.join(pred_dir, image_id + '.png'), gt.shape)
        confusion_matrix(pred, gt, n_class)
    return timed_calls(one_image, bench.ids, device)


def measure_train_seg(bench, device):
    """One engine step of step.train_seg (its batch_loss) on --seg_batch_size crops, per
    iteration: with
    ``--seg_split K`` as K accumulated micro-batches of batch / K (the stage's
    --seg_iter_size mechanism)."""
    from data.loaders import SegmentationTrainDataset
    from net.deeplab import build_segmentation_model
    from pipeline.engine import Optimiser
    from step.train_seg import batch_loss, optimizer_for
    a = bench.args
    split = bench.seg_split
    dataset = SegmentationTrainDataset(bench.source, bench.train_ids, None, a.seg_crop_size,
                                       a.seg_scales)
    parts = training_batches(dataset, a.seg_batch_size // split,
                             (bench.settings.repeats + 1) * split - 1)
    torch.manual_seed(0)
    model = build_segmentation_model(a.seg_arch, bench.source.n_classes + 1,
                                     msc=a.seg_msc).to(device).train()
    optimizer, scheduler = optimizer_for(model, a)
    optimiser = Optimiser(optimizer, scheduler, device)

    def iteration(micro_batches):
        optimiser.step(model, micro_batches, batch_loss)
    groups = [parts[k:k + split] for k in range(0, len(parts), split)]
    return timed_calls(iteration, groups[1:], device)


def measure_eval_seg(use_crf):
    """step.eval_seg's loop: multi-scale + flip probabilities, labels (with or without the
    dense CRF), PNGs, per image."""
    def measure(bench, device):
        from misc.io import save_png
        from net.deeplab import ARCHITECTURES
        from step.eval_seg import multiscale_probs, predictions
        a = bench.args
        torch.manual_seed(0)
        model = ARCHITECTURES[a.seg_arch](bench.source.n_classes + 1,
                                          msc=a.seg_msc).to(device).eval()
        out_dir = os.path.join(bench.tmp, 'seg_out')
        os.makedirs(out_dir, exist_ok=True)

        def one_image(image_id):
            img = bench.source.read_image(image_id)
            with torch.no_grad():
                probs = multiscale_probs(model, [img], a.seg_eval_scales, device, False,
                                         a.seg_eval_flip)[0]
            for variant, label in predictions(probs, img, use_crf).items():
                save_png(os.path.join(out_dir, '%s_%s.png' % (image_id, variant)), label)
        return timed_calls(one_image, bench.ids, device)
    return measure


@dataclasses.dataclass
class Stage:
    name: str
    unit: str
    measure: object
    count: object                   # recipe arguments -> units in the VOC recipe
    group: str = 'flows'
    on_gpu: bool = True
    note: str = ''


def epochs_of_steps(n_images, batch, epochs):
    """Iterations of a training over ``epochs`` with incomplete batches dropped."""
    return (n_images // batch) * epochs


def stage_table(irn_split=1, seg_split=1):
    """Every stage of the VOC recipe: what is measured and how many units it has."""
    tiny_blip = 'tiny random BLIP: a lower bound of the real BLIP ViT-B'
    tiny_clip = 'tiny random CLIP: a lower bound of the real ViT-L/14'
    seg_note = ('%d accumulated micro-batches of 1/%d of the batch' % (seg_split, seg_split)
                if seg_split > 1 else '')
    irn_note = ('%d accumulated micro-batches of 1/%d of the batch' % (irn_split, irn_split)
                if irn_split > 1 else '')
    return [
        Stage('vqa', 'image', measure_vqa, lambda r: VOC_TRAIN_AUG, note=tiny_blip),
        Stage('text caches', 'image', measure_caches, lambda r: VOC_TRAIN_AUG, note=tiny_clip),
        Stage('train_cam step', 'iteration', measure_train_cam,
              lambda r: epochs_of_steps(VOC_TRAIN_AUG, r.cam_batch_size, r.cam_num_epoches),
              group='baseline', note='the authors ship res50_cam.pth'),
        Stage('make_cam fp32', 'image', measure_cams(cam_network_of('cam'), False),
              lambda r: VOC_TRAIN_AUG, group='baseline'),
        Stage('make_cam bf16', 'image', measure_cams(cam_network_of('cam'), True),
              lambda r: VOC_TRAIN_AUG, group='variant', note='--amp True'),
        Stage('train_qa_clims step', 'iteration', measure_train_qa_clims,
              lambda r: epochs_of_steps(VOC_TRAIN_AUG, r.clims_batch_size, r.clims_num_epoches),
              note=tiny_clip),
        Stage('make_clims fp32', 'image', measure_cams(cam_network_of('clims_cam'), False),
              lambda r: VOC_TRAIN_AUG),
        Stage('make_clims bf16', 'image', measure_cams(cam_network_of('clims_cam'), True),
              lambda r: VOC_TRAIN_AUG, group='variant', note='--amp True'),
        Stage('eval_cam', 'image', measure_eval_cam, lambda r: VOC_TRAIN, on_gpu=False,
              note='55-threshold sweep'),
        Stage('cam_to_ir_label 1 worker', 'image', measure_ir_label_1, lambda r: VOC_TRAIN_AUG,
              group='variant', on_gpu=False),
        Stage('cam_to_ir_label 2 workers', 'image', measure_ir_label_pool(2),
              lambda r: VOC_TRAIN_AUG, on_gpu=False, note='throughput of a 2-process pool'),
        Stage('train_irn step', 'iteration', measure_train_irn,
              lambda r: epochs_of_steps(VOC_TRAIN_AUG, r.irn_batch_size, r.irn_num_epoches),
              note=irn_note),
        Stage('make_sem_seg', 'image', measure_make_sem_seg, lambda r: VOC_TRAIN_AUG),
        Stage('eval_sem_seg', 'image', measure_eval_sem_seg, lambda r: VOC_TRAIN,
              on_gpu=False),
        Stage('train_seg step', 'iteration', measure_train_seg, lambda r: r.seg_num_iters,
              note=seg_note),
        Stage('eval_seg without CRF', 'image', measure_eval_seg(False), lambda r: VOC_VAL,
              group='variant'),
        Stage('eval_seg with CRF', 'image', measure_eval_seg(True), lambda r: VOC_VAL,
              note='scores both'),
    ]


def run_stage(stage, bench, device):
    """Measure one stage on one device: a Row."""
    meter = StageMeter(device)
    with meter:
        if getattr(stage.measure, 'needs_meter', False):
            seconds = stage.measure(bench, device, meter)
        else:
            seconds = stage.measure(bench, device)
    gc.collect()
    if device.type == 'cuda':
        torch.cuda.empty_cache()
    return Row(stage.name, str(device), stage.unit, seconds, meter.rss_before_mb,
               meter.peak_rss_mb,
               meter.peak_gpu_mb, stage.count(bench.defaults), stage.group, stage.note)


# ---------------------------------------------------------------- the report

def hours(seconds):
    return seconds / 3600


def format_table(rows):
    lines = ['| stage | device | s per unit (median) | runs | RSS before (MB) | peak RSS (MB) | '
             'peak GPU (MB) | VOC units | projected (s) | in | note |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append('| %s | %s | %.4g per %s | %d | %.0f | %.0f | %s | %d | %.1f | %s | %s |' % (
            r.stage, r.device, r.per_unit, r.unit, len(r.seconds), r.rss_before_mb,
            r.peak_rss_mb,
            '-' if r.peak_gpu_mb is None else '%.0f' % r.peak_gpu_mb, r.count, r.projected,
            r.group, r.note))
    return '\n'.join(lines)


def projection(rows, device, groups):
    """Sum of time per unit x units over the stages of ``groups`` on ``device`` (the CPU
    row of a stage that ran on the CPU only)."""
    chosen = {}
    for r in rows:
        if r.group in groups and r.device in (device, 'cpu'):
            if r.stage not in chosen or r.device == device:
                chosen[r.stage] = r
    return sum(r.projected for r in chosen.values())


def projection_lines(rows, devices):
    lines = []
    for device in devices:
        flows = projection(rows, device, ('flows',))
        scratch = projection(rows, device, ('flows', 'baseline'))
        lines.append('projected VOC recipe on %s: flows %.1f s = %.1f h = %.2f days; with the '
                     'baseline (train_cam, make_cam) %.1f s = %.1f h = %.2f days'
                     % (device, flows, hours(flows), hours(flows) / 24, scratch, hours(scratch),
                        hours(scratch) / 24))
    return lines


def available_devices(requested):
    if requested:
        return requested.split(',')
    return ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


def measure_rows(a, devices):
    """(rows, header lines) of the stages asked for, measured now."""
    settings = quick_settings() if a.quick else Settings(False, a.images, a.repeats)
    stages = [s for s in stage_table(a.irn_split, a.seg_split)
              if a.stages is None or s.name in a.stages.split(',')]
    unknown = set(a.stages.split(',')) - {s.name for s in stages} if a.stages else set()
    if unknown:
        raise SystemExit('unknown stages %s; the stages: %s'
                         % (sorted(unknown), ', '.join(s.name for s in stage_table())))
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(settings, tmp, a.irn_split, a.seg_split)
        for device in devices:
            for stage in stages:
                if device != 'cpu' and not stage.on_gpu:
                    continue
                start = time.perf_counter()
                rows.append(run_stage(stage, bench, torch.device(device)))
                print('%s on %s: %.4g s per %s (stage measured in %.1f s)'
                      % (rows[-1].stage, device, rows[-1].per_unit, rows[-1].unit,
                         time.perf_counter() - start), file=sys.stderr, flush=True)
        sizes = sorted({bench.source.read_image(i).shape[:2] for i in bench.ids})
    header = ['%s; %d images of %s (H x W), %d timed training iterations; stages %s: load '
              'average %.2f before, %.2f after'
              % ('QUICK (tiny sizes, not a measurement)' if a.quick else 'VOC size',
                 len(bench.ids), ', '.join('%dx%d' % s for s in sizes), settings.repeats,
                 ', '.join(s.name for s in stages), load_before[0], os.getloadavg()[0])]
    return rows, header


def save_run(path, machine, header, rows):
    with open(path, 'w') as f:
        json.dump({'machine': machine, 'header': header,
                   'rows': [dataclasses.asdict(r) for r in rows]}, f, indent=1)


def load_runs(paths):
    """(machine, header lines, rows) of runs saved with --json, in the given order."""
    machine, header, rows = None, [], []
    for path in paths:
        with open(path) as f:
            run = json.load(f)
        machine = machine or run['machine']
        header += run['header']
        rows += [Row(**r) for r in run['rows']]
    return machine, header, rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--images', type=int, default=3)
    p.add_argument('--repeats', type=int, default=2, help='timed training iterations')
    p.add_argument('--threads', type=int, default=os.cpu_count() or 1)
    p.add_argument('--devices', default=None, help='comma-separated (default: cpu, and cuda '
                   'when present)')
    p.add_argument('--stages', default=None, help='comma-separated stage names (default: all)')
    p.add_argument('--irn_split', type=int, default=1,
                   help='time a train_irn iteration as K steps of --irn_batch_size / K one '
                   'after another (when the whole batch does not fit in memory)')
    p.add_argument('--seg_split', type=int, default=1,
                   help='time a train_seg iteration as K accumulated micro-batches of '
                   '--seg_batch_size / K')
    p.add_argument('--quick', action='store_true', help='tiny sizes: a test of the script')
    p.add_argument('--json', default=None, help='also save the rows to this file')
    p.add_argument('--combine', nargs='+', default=None, metavar='JSON',
                   help='print the table and projection of runs saved with --json instead '
                   'of measuring (e.g. stages measured in separate runs)')
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.combine:
        machine, header, rows = load_runs(a.combine)
        devices = list(dict.fromkeys(r.device for r in rows))
    else:
        devices = available_devices(a.devices)
        rows, header = measure_rows(a, devices)
        machine = machine_description(devices)
        if a.json:
            save_run(a.json, machine, header, rows)
    print('Machine: %s' % machine)
    print('\n'.join(header))
    print(format_table(rows))
    for line in projection_lines(rows, devices):
        print(line)
    return rows


if __name__ == '__main__':
    main()
