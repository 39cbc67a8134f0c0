"""The CAM network families (``--cam_network``): name -> the backbone that the
networks of every stage are built around.

Each entry builds the networks the stages use, around one backbone
(:class:`net.backbone.CamBackbone`, whose docstring lists what a backbone
provides): the baseline CAM network (train_cam; :meth:`CamNetwork.cam` for
make_cam's CAMs), the QA-CLIMS network (train_qa_clims; make_clims) and
IRNet (train_irn, make_sem_seg). ``resnet50`` is the reference's (and the
default); the reference's module names of its networks are aliases of it.

Adding a backbone: subclass :class:`net.backbone.CamBackbone` in its own
module of ``net/`` and add one :class:`CamNetwork` to :data:`CAM_NETWORKS`:
its name (also the name of the backbone's module in the state dicts), a
function that imports and returns the class (torch loads only when a stage
runs) and any aliases. ``--cam_network NAME`` then trains and infers with it
in every stage; ``--feature_dim`` and the ``--cam_crop_size`` minimum follow
its ``feature_dim`` and ``stride``.
"""
from dataclasses import dataclass
from typing import Callable

# Names the networks' own modules or the reference's checkpoint aliases use: not a family name.
RESERVED_NAMES = ('classifier', 'mean_shift', 'stage1', 'stage2', 'stage3', 'stage4', 'stage5',
                  'backbone', 'newly_added', 'edge_layers', 'dp_layers', 'path_indices',
                  'disp_target')


@dataclass(frozen=True)
class CamNetwork:
    """A CAM network family: ``backbone()`` returns its :class:`net.backbone.CamBackbone`
    subclass; ``aliases`` are other names ``--cam_network`` accepts for it."""
    name: str
    backbone: Callable
    aliases: tuple = ()

    def __post_init__(self):
        if not self.name.isidentifier() or self.name in RESERVED_NAMES \
                or self.name.startswith('fc_'):
            raise ValueError('CAM network name %r: it names the backbone\'s module in the state '
                             'dicts, so it must be a Python identifier other than %s and not '
                             'start with fc_' % (self.name, ', '.join(RESERVED_NAMES)))

    @property
    def feature_dim(self):
        """Channels of the backbone's features (the classifier's input)."""
        return self.backbone().feature_dim

    @property
    def stride(self):
        """Output stride of the backbone (the stride of the CAMs)."""
        return self.backbone().stride

    def build_backbone(self, norm_layer):
        return self.backbone()(norm_layer)

    def baseline(self, n_classes, detach_early_stages=False):
        """train_cam's network (:class:`net.resnet50_cam.Net`)."""
        from net.resnet50_cam import Net
        return Net(n_classes, detach_early_stages, network=self)

    def cam(self, n_classes):
        """make_cam's network: the baseline's CAMs of [image, flipped image]."""
        from net.resnet50_cam import CAM
        return CAM(n_classes, network=self)

    def clims(self, n_classes):
        """train_qa_clims's network (:class:`net.resnet50_clims.CLIMS`)."""
        from net.resnet50_clims import CLIMS
        return CLIMS(n_classes, network=self)

    def clims_cam(self, n_classes):
        """make_clims's network: the QA-CLIMS network's CAMs of [image, flipped image]."""
        from net.resnet50_clims import CAM
        return CAM(n_classes, network=self)

    def irnet(self):
        """train_irn's and make_sem_seg's IRNet (:class:`net.resnet50_irn.IRNet`)."""
        from net.resnet50_irn import IRNet
        return IRNet(network=self)


def _resnet50():
    from net.resnet50 import ResNet50
    return ResNet50


RESNET50 = CamNetwork('resnet50', _resnet50,
                      aliases=('net.resnet50_cam', 'net.resnet50_clims', 'net.resnet50_irn'))
CAM_NETWORKS = {RESNET50.name: RESNET50}
DEFAULT = RESNET50.name


def cam_network(name):
    """The family registered under ``name`` or one of its aliases; a ValueError listing
    the registered names otherwise."""
    for entry in CAM_NETWORKS.values():
        if name == entry.name or name in entry.aliases:
            return entry
    raise ValueError('unknown CAM network %r (registered: %s)' % (name, registered_names()))


def registered_names():
    """'resnet50 (or net.resnet50_cam, ...)' for every family, for messages."""
    return ', '.join(entry.name + (' (or %s)' % ', '.join(entry.aliases) if entry.aliases else '')
                     for entry in CAM_NETWORKS.values())
