"""Prediction with trained models: loading an experiment's checkpoints, predicting images with test-time
views, the out-of-fold estimate and the submission. Used by ``predict.py`` and ``train.py --predict``."""
