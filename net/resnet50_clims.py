"""QA-CLIMS CAM network (docs/method.md#qa-clims-training): the baseline layout with ordinary
BatchNorm (batch statistics in training mode; conv1/bn1 frozen) and sigmoid
maps without pooling."""
import torch

from net.resnet50_cam import ResNet50Classifier, flip_fused_cam


class CLIMS(ResNet50Classifier):
    """forward(x) -> sigmoid(classifier(features)) of shape [N, n_classes, h, w]."""

    def forward(self, x):
        return torch.sigmoid(self.classifier(self.features(x)))


class CAM(ResNet50Classifier):
    """Inference wrapper with the QA-CLIMS weights (eval-mode BatchNorm)."""

    def forward(self, pair):
        return flip_fused_cam(self, pair)
