"""Synthetic test maps (no Scipion import, so core tests can use them too)."""
import numpy as np

from redprior.core.simulation.structure import nyquist_sphere


def blobs(n, seed, k=12):
    """A smooth, asymmetric synthetic 'molecule' of Gaussian blobs, band-limited (no real structure)."""
    rng = np.random.default_rng(seed)
    c = np.arange(n) - n // 2
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    v = np.zeros((n, n, n))
    for _ in range(k):
        p = rng.normal(0, n / 9, 3)
        s = rng.uniform(0.8, 1.6)
        v += np.exp(-((z - p[0]) ** 2 + (y - p[1]) ** 2 + (x - p[2]) ** 2) / (2 * s * s))
    return nyquist_sphere(v).astype(np.float64)
