"""Evaluation on labelled data: image- and pixel-level metrics, drusen ground truth, datasets.

``metrics`` (scikit-learn AUROC/AP/ROC), ``drusen`` (masks from expert RPE/BM lines),
``dataset`` (class folders -> labelled files), ``run`` (score a labelled folder, write outputs).
"""
