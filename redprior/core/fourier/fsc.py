"""Fourier shell correlation and the one rule that reads a resolution off a curve.

Shells are round(|k|), 0..N/2, as RELION's getFSC. A resolution is that of the last shell
before the curve first drops below the threshold (shell 0 ignored), as RELION reads its own
FSC. The two edge cases are said, never invented:
  * the curve never drops below the threshold: "better than Nyquist: never crosses";
  * it is below from shell 1 on: "worse than <box> A: below from the first shell"
    (bound_A infinite).
Every place that shows or uses a resolution (the hook's lambda, logs, summaries, reports,
viewers, the benchmark) reads it through read_resolution().
"""
from dataclasses import dataclass

import numpy as np

from .grid import shell_index


def fsc(map1, map2):
    """FSC per shell 0..N/2 (shells = round(|k|), unmasked, as relion_image_handler --fsc)."""
    if map1.shape != map2.shape:
        raise ValueError(f"FSC needs maps of the same shape, got {map1.shape} and {map2.shape}.")
    n = map1.shape[0]
    f1 = np.fft.rfftn(map1)
    f2 = np.fft.rfftn(map2)
    shells = shell_index(n, map1.ndim).ravel()
    nsh = n // 2 + 1
    keep = shells < nsh
    s = shells[keep]
    num = np.bincount(s, (f1.ravel()[keep] * np.conj(f2.ravel()[keep])).real, nsh)
    d1 = np.bincount(s, (np.abs(f1.ravel()[keep]) ** 2), nsh)
    d2 = np.bincount(s, (np.abs(f2.ravel()[keep]) ** 2), nsh)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / np.sqrt(d1 * d2)
    return np.nan_to_num(out, nan=0.0)


@dataclass(frozen=True)
class Resolution:
    """A resolution read off one FSC curve at one threshold."""
    threshold: float
    shell: int        # last shell >= threshold before the first drop; N/2 if never crosses
    crossed: bool     # False: the curve never drops below the threshold
    box: int
    pixel_size: float

    @property
    def nyquist_A(self):
        return 2.0 * self.pixel_size

    @property
    def angstrom(self):
        """The resolution in A, or None when there is no such number (see bound_A)."""
        if not self.crossed or self.shell <= 0:
            return None
        return self.box * self.pixel_size / float(self.shell)

    @property
    def bound_A(self):
        """A number for sorting and for lambda: the resolution, Nyquist when the curve never
        crosses, infinity when it is below the threshold from the first shell (no
        confidence at all: CW-RED's lambda is 0 whatever the box)."""
        if not self.crossed:
            return self.nyquist_A
        if self.shell <= 0:
            return float("inf")
        return self.angstrom

    @property
    def text(self):
        if not self.crossed:
            return "better than Nyquist (%.2f Å): never crosses %g" % (self.nyquist_A,
                                                                      self.threshold)
        if self.shell <= 0:
            return "worse than %.1f Å: below %g from the first shell" % (
                self.box * self.pixel_size, self.threshold)
        return "%.2f Å" % self.angstrom

    def as_dict(self):
        return dict(threshold=float(self.threshold), crossed=bool(self.crossed),
                    shell=int(self.shell), resolution_A=self.angstrom,
                    limit_A=float(self.bound_A), text=self.text)


def read_resolution(curve, box, pixel_size, threshold=0.143):
    """The Resolution of `curve` (shells 0..) at `threshold` for a box of `box` px."""
    curve = np.nan_to_num(np.asarray(curve, dtype=float), nan=-1.0)
    below = np.nonzero(curve[1:] < threshold)[0]
    if below.size:
        return Resolution(float(threshold), int(below[0]), True, int(box), float(pixel_size))
    return Resolution(float(threshold), int(box) // 2, False, int(box), float(pixel_size))


def shell_resolutions(box, pixel_size):
    """Resolution in A of each shell 0..box/2 (shell 0 is inf)."""
    idx = np.arange(box // 2 + 1, dtype=float)
    with np.errstate(divide="ignore"):
        return np.where(idx > 0, box * pixel_size / np.maximum(idx, 1e-9), np.inf)


def frequencies(box, pixel_size):
    """Spatial frequency (1/A) of shells 0..box/2."""
    return np.arange(box // 2 + 1) / float(box * pixel_size)


def correlation(a, b):
    """Real-space correlation coefficient of two maps."""
    a = a.ravel().astype(np.float64) - a.mean()
    b = b.ravel().astype(np.float64) - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def mean_fsc(curve, box):
    """One number for a whole curve: its mean over shells 1..box/2 (shell 0 is always ~1)."""
    return float(np.mean(np.asarray(curve, dtype=float)[1:box // 2 + 1]))
