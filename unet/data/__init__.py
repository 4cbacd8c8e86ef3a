"""Datasets, without TensorFlow: folder datasets, synthetic data, recipes from public packages, splits."""
