"""What a CAM backbone provides to the networks of every stage.

A backbone registered in :mod:`net.registry` (``--cam_network``) is built
once per network with that network's normalisation layer
(``cls(norm_layer)``: :class:`net.resnet50.FixedBatchNorm` for the baseline
CAM network and IRNet, ``nn.BatchNorm2d`` for QA-CLIMS) and becomes the
network's module named after its registry entry (so ``resnet50.*`` in the
state dicts of the ResNet-50 family). The networks built around it:

* the baseline CAM network and the QA-CLIMS network
  (:class:`net.resnet50_cam.CamClassifier`): ``forward`` (features), the
  split ``forward_early`` / ``forward_late`` (IRNet's baseline variant
  detaches the early part, ``--cam_detach_early_stages``), ``stem_parameters``
  (frozen in every CAM network), ``early_modules`` (frozen by that variant),
  ``feature_dim`` and ``stride`` (the classifier's input channels and the
  CAMs' stride);
* IRNet (:class:`net.resnet50_irn.IRNet`): ``stage_outputs`` and
  ``stage_channels``, five maps at strides 4, 4, 8, 16, 16 (a backbone
  without them, ``stage_channels = None``, has no IRNet);
* ``load_imagenet_weights(path)``: the ImageNet initialisation of
  ``--imagenet_weights`` (train_cam, train_irn);
* ``inference_form()`` (optional): what make_cam and make_clims run in place
  of ``forward`` (:class:`net.resnet50_cam.InferenceCAM`).
"""
import abc

from torch import nn


class CamBackbone(nn.Module, metaclass=abc.ABCMeta):
    """Interface of a ``--cam_network`` backbone (module docstring).

    Class attributes: ``feature_dim`` (channels of ``forward``'s output),
    ``stride`` (its output stride) and ``stage_channels`` (channels of the
    five maps of ``stage_outputs(x)``, which a backbone with an IRNet
    defines; None without).
    """

    feature_dim = None
    stride = None
    stage_channels = None

    def forward(self, x):
        """Features [N, feature_dim, H / stride, W / stride] of images [N, 3, H, W]."""
        return self.forward_late(self.forward_early(x))

    @abc.abstractmethod
    def forward_early(self, x):
        """The stages IRNet's baseline variant detaches (``--cam_detach_early_stages``)."""

    @abc.abstractmethod
    def forward_late(self, x):
        """The remaining stages, from ``forward_early``'s output to the features."""

    @abc.abstractmethod
    def stem_parameters(self):
        """Parameters frozen in every CAM network (the reference: conv1 and bn1)."""

    @abc.abstractmethod
    def early_modules(self):
        """Modules of ``forward_early`` that IRNet's baseline variant freezes."""

    @abc.abstractmethod
    def load_imagenet_weights(self, path):
        """Initialise from an ImageNet weights file; an error naming the file if it does not fit."""

    def inference_form(self):
        """A module computing ``forward`` of this backbone in eval mode, the same features
        within float32 rounding, for CAM inference; by default the backbone itself.
        A backbone can return a faster equivalent (ResNet-50: BatchNorm folded)."""
        return self
