"""How much of what the denoiser adds is shared by two half-maps, in one frame and in two.

Two "half-maps" of a held-out structure: its ground truth (box 64, 2 A/px, as in
bench_quality.py) plus two independent white-noise fields. Each is denoised by the shipped
model, both in the map's own frame ('same') or the second turned by a quarter turn about z
and turned back ('rotated', the hook's --half-views rotated, core.denoiser.views). Printed per
band of Fourier shells:
  - FSC(x1, x2): the two inputs;
  - T: the mean FSC of the denoised maps to the truth;
  - FSC(D1, D2): the two denoised maps, in each frame;
  - shared error = FSC(D1, D2) - T1 * T2: what two maps whose errors were independent would
    not share (0 for independent errors), i.e. what the denoiser puts into both halves that
    is not the truth. A positive value inflates a half-map FSC.

    venv/bin/python benchmarks/bench_half_views.py [--structures 3ENL,2XHE,7OK9] [--noise 1,2,4]

Measured (2026-12-03, shipped model 5fbdbe7b49d8; the table is printed, nothing is written):
see the README's quality section.
"""
import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import bench_quality  # noqa: E402  (the structures and their ground truths)
from redprior.core.denoiser.model import Denoiser  # noqa: E402
from redprior.core.denoiser.views import (HALF_VIEWS_ROTATED, HALF_VIEWS_SAME,  # noqa: E402
                                          denoise_in_view)
from redprior.core.fourier.fsc import fsc  # noqa: E402
from redprior.core.io.shipped import DEFAULT_DENOISER  # noqa: E402

BANDS = ((5, 10), (10, 15), (15, 20), (20, 25), (25, 29), (29, 33))  # shells [lo, hi)


def band_means(curve):
    return [float(np.mean(curve[lo:hi])) for lo, hi in BANDS]


def measure(denoiser, gt, noise, seed):
    rng = np.random.default_rng(seed)
    sd = noise * float(gt.std())
    x1, x2 = (np.float32(gt + sd * rng.standard_normal(gt.shape)) for _ in range(2))

    def run(x):
        return denoiser(x, bench_quality.PIX), ""

    d1, _ = denoise_in_view(run, x1, 1)
    rows = {"FSC(x1, x2)": band_means(fsc(x1, x2))}
    for views in (HALF_VIEWS_SAME, HALF_VIEWS_ROTATED):
        d2, _ = denoise_in_view(run, x2, 2, views)
        t1, t2 = fsc(d1, gt), fsc(d2, gt)
        both = fsc(d1, d2)
        rows[f"T ({views})"] = band_means(0.5 * (t1 + t2))
        rows[f"FSC(D1, D2) ({views})"] = band_means(both)
        rows[f"shared error ({views})"] = band_means(both - t1 * t2)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--structures", default=",".join(bench_quality.STRUCTURES))
    p.add_argument("--noise", default="1,2,4",
                   help="noise standard deviation in units of the truth's (default %(default)s)")
    p.add_argument("--model", default=DEFAULT_DENOISER)
    a = p.parse_args(argv)
    denoiser = Denoiser(a.model)
    res = ["%.1f-%.1f" % (64 * bench_quality.PIX / lo, 64 * bench_quality.PIX / hi)
           for lo, hi in BANDS]
    print("| structure | noise | quantity | " + " | ".join(f"shells {lo}-{hi - 1} ({r} A)"
                                                      for (lo, hi), r in zip(BANDS, res)) + " |")
    print("|---" * (3 + len(BANDS)) + "|")
    for entry in a.structures.split(","):
        path, why = bench_quality.structure_file(entry)
        if path is None:
            print(f"skipping {why}", file=sys.stderr)
            continue
        gt = bench_quality.ground_truth(entry)
        for i, noise in enumerate(float(v) for v in a.noise.split(",")):
            for name, vals in measure(denoiser, gt, noise, seed=i + 1).items():
                print(f"| {entry} | {noise:g} | {name} | "
                      + " | ".join(f"{v:+.3f}" for v in vals) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
