"""Single pass of two or more denoisers on the same training pairs: which brings the maps
closer to the truth (issue 12: measure on RELION-intermediate maps of validation structures).

    venv/bin/python benchmarks/bench_denoiser_compare.py --store PAIRS_FOLDER \
        --structures s003_pymol-data_demo_1tii.pdb_A \
        redprior/data/denoiser/redprior_default_denoiser.keras \
        benchmarks/results/candidate_denoiser/redprior_default_denoiser.keras

PAIRS_FOLDER: the extra/pairs folder of a 'training maps' run (a core.training_data.store
PairStore); --structures: the validation structures of the training that made the candidate
(its training_history.json, structures_val), so that no model is scored on maps it was trained
on. Prints, per model, the median L2 and L1 ratios ||f(x~) - gt|| / ||x~ - gt|| per band of
nominal resolution (< 1: the denoiser helps; lower is better), from core.denoiser.single_pass.
"""
import argparse
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from redprior.core.denoiser.model import Denoiser  # noqa: E402
from redprior.core.denoiser.single_pass import denoiser_fn, evaluate  # noqa: E402
from redprior.core.training_data.store import PairStore  # noqa: E402

BANDS = (("better than 8 A", 0.0, 8.0), ("8-12 A", 8.0, 12.0), ("12-30 A", 12.0, 30.0),
         ("all", 0.0, 1e9))


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help=".keras files")
    p.add_argument("--store", required=True, help="a PairStore folder (extra/pairs)")
    p.add_argument("--structures", default="", help="comma-separated structure ids (default all)")
    p.add_argument("--gaussian-3hsy", action="store_true",
                   help="also the Gaussian-noise maps of 3HSY (never trained on) that "
                        "redprior/tests/test_default_denoiser.py checks the shipped model on")
    a = p.parse_args()
    store = PairStore(a.store)
    wanted = set(filter(None, a.structures.split(",")))
    idx = [i for i, e in enumerate(store.entries) if not wanted or e["structure"] in wanted]
    if not idx:
        sys.exit(f"no pairs of {sorted(wanted)} in {a.store}")
    print(f"{len(idx)} pairs of {sorted({store.entries[i]['structure'] for i in idx})}, "
          f"box {store.box} at {store.pixel_size:g} A/px\n")
    print("| model | " + " | ".join(f"{name}: median L2 / L1 (maps)" for name, _, _ in BANDS)
          + " |")
    print("|---|" + "---|" * len(BANDS))
    for path in a.models:
        res = evaluate(denoiser_fn(Denoiser(path), store.pixel_size), store, idx)
        cells = []
        for _, lo, hi in BANDS:
            sel = [m for m in res["maps"] if lo <= m["resolution"] < hi]
            cells.append(f"{np.median([m['ratio_l2'] for m in sel]):.3f} / "
                         f"{np.median([m['ratio_l1'] for m in sel]):.3f} ({len(sel)})"
                         if sel else "-")
        print(f"| {os.path.relpath(path, REPO)} | " + " | ".join(cells) + " |", flush=True)
    if a.gaussian_3hsy:
        from redprior.tests.test_default_denoiser import held_out_pairs

        pairs = held_out_pairs(store.box, store.pixel_size)
        print("\nGaussian-noise maps of 3HSY: L2 ratio per nominal resolution")
        for path in a.models:
            res = evaluate(denoiser_fn(Denoiser(path), store.pixel_size), pairs)
            print(f"  {os.path.relpath(path, REPO)}: " + ", ".join(
                f"{m['resolution']:.1f} A {m['ratio_l2']:.3f}" for m in res["maps"])
                + f"; median {np.median([m['ratio_l2'] for m in res['maps']]):.3f}", flush=True)


if __name__ == "__main__":
    main()
