"""Numerical core of redprior: pure Python + numpy (TensorFlow only in core.denoiser.model).

Nothing in this package imports Scipion, so it can be unit-tested, benchmarked and reused alone.
"""
