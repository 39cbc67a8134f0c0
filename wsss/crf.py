"""Dense CRF refinement of a label map (docs/method.md#confident-regions), with pydensecrf2."""
import numpy as np
import pydensecrf.densecrf as dcrf
from pydensecrf.utils import unary_from_labels


def crf_inference_label(img, labels, n_labels, t=10, gt_prob=0.7):
    """Refine ``labels`` [H, W] (values < n_labels) on the uint8 RGB ``img``.

    Unary from the labels (gt_prob 0.7, zero_unsure False), Gaussian pairwise
    sxy 3 compat 3, bilateral sxy 50 srgb 5 compat 10, ``t`` iterations;
    returns the argmax of the marginals.
    """
    h, w = img.shape[:2]
    crf = dcrf.DenseCRF2D(w, h, n_labels)
    crf.setUnaryEnergy(unary_from_labels(labels, n_labels, gt_prob=gt_prob, zero_unsure=False))
    crf.addPairwiseGaussian(sxy=3, compat=3)
    crf.addPairwiseBilateral(sxy=50, srgb=5, rgbim=np.ascontiguousarray(np.copy(img)), compat=10)
    q = crf.inference(t)
    return np.argmax(np.array(q).reshape((n_labels, h, w)), axis=0)


def crf_inference_prob(img, probs, t=10, pos_w=3, pos_xy_std=1, bi_w=4, bi_xy_std=67,
                       bi_rgb_std=3):
    """Dense-CRF refinement of class probabilities [C, H, W] (DeepLab's settings).

    Returns the refined probabilities [C, H, W] (float32).
    """
    from pydensecrf.utils import unary_from_softmax
    n_labels, h, w = probs.shape
    crf = dcrf.DenseCRF2D(w, h, n_labels)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs.astype(np.float32))))
    crf.addPairwiseGaussian(sxy=pos_xy_std, compat=pos_w)
    crf.addPairwiseBilateral(sxy=bi_xy_std, srgb=bi_rgb_std,
                             rgbim=np.ascontiguousarray(np.copy(img)), compat=bi_w)
    return np.array(crf.inference(t), np.float32).reshape(n_labels, h, w)
