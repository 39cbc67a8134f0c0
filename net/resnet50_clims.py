"""QA-CLIMS CAM network (docs/method.md#qa-clims-training): the baseline layout with ordinary
BatchNorm (batch statistics in training mode; the backbone's stem frozen) and
sigmoid maps without pooling, around a ``--cam_network`` backbone (ResNet-50
by default)."""
import torch

from net.resnet50_cam import CamClassifier, flip_fused_cam


class CLIMS(CamClassifier):
    """forward(x) -> sigmoid(classifier(features)) of shape [N, n_classes, h, w]."""

    def forward(self, x):
        return torch.sigmoid(self.classifier(self.features(x)))


class CAM(CamClassifier):
    """Inference wrapper with the QA-CLIMS weights (eval-mode BatchNorm)."""

    def forward(self, pair):
        return flip_fused_cam(self, pair)
