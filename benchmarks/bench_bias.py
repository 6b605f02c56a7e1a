"""Prior-bias benchmark: what does each prior make of particles that hold no signal?

The control of the prior-bias test protocol (core.validation.bias), outside Scipion, on a
quality-benchmark data set: every particle of <structure> at <snr> replaced by white noise of
the same mean and standard deviation, refined from the same initial model (the truth
low-passed to 30 A) with each method of bench_quality (same RELION options, same hook).
Per run it records what the schedule saw (the hook's resolution and lambda per call) and
how much of the real structure the result holds beyond the initial model's 30 A: the
masked FSC of the half-map average to the ground truth, averaged from 30 A to Nyquist
(core.validation.bias.invented_structure; flagged above 0.143).

    venv/bin/python benchmarks/bench_bias.py --cw 20,10          # plain, red, cwred 20/10
    venv/bin/python benchmarks/bench_bias.py --report

Resumable like bench_quality: benchmarks/results/quality_runs/<data set>_noise/<method>/
metrics.json; the table goes to benchmarks/results/bias.md.
"""
import argparse
import json
import os
import shutil
import sys

os.environ.setdefault("REDPRIOR_CORE_ONLY", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import bench_quality as bq  # noqa: E402
from redprior.core.io.mrc import read_map  # noqa: E402
from redprior.core.prior.history import read_log  # noqa: E402
from redprior.core.relion.run_folder import final_output  # noqa: E402
from redprior.core.validation import bias  # noqa: E402
from redprior.core.validation.metrics import auto_mask  # noqa: E402

METHODS = ("red", "cwred", "plain")


def make_noise_control(data, folder, seed):
    """folder/data: the data set's particles replaced by noise (core.validation.bias)."""
    out = os.path.join(folder, "data")
    if os.path.exists(os.path.join(out, "particles.star")):
        return out
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    star = os.path.join(data, "particles.star")
    images = bias.read_images(star)
    noise = bias.noise_like(images, np.random.default_rng(seed))
    bias.write_control(star, noise, os.path.join(tmp, "particles.star"), bq.PIX)
    for name in ("ground_truth.mrc", "initial_model.mrc"):
        shutil.copy(os.path.join(data, name), tmp)
    meta = json.load(open(os.path.join(data, "dataset.json")))
    meta.update(control="pure noise", noise_seed=seed)
    with open(os.path.join(tmp, "dataset.json"), "w") as fh:
        json.dump(meta, fh)
    os.replace(tmp, out)
    bq.log(f"pure-noise control of {os.path.basename(os.path.dirname(data))}: "
           f"{len(noise)} particles")
    return out


def evaluate(data, out, wall_s):
    gt, _ = read_map(os.path.join(data, "ground_truth.mrc"))
    h1, _ = read_map(final_output(out, "half1_class001_unfil.mrc"))
    h2, _ = read_map(final_output(out, "half2_class001_unfil.mrc"))
    mask = auto_mask(gt, bq.PIX)
    r = bias.invented_structure(0.5 * (h1 + h2), gt, bq.PIX, bq.INITIAL_LOWPASS_A, mask=mask)
    calls = [c for c in read_log(os.path.join(out, "exrecon_log.jsonl")) if "error" not in c]
    return dict(mean_fsc_beyond=r["mean_fsc"], max_fsc_beyond=r["max_fsc"],
                invented=r["invented"], cutoff_A=r["cutoff_A"], wall_s=round(wall_s, 1),
                lambda_history=[[c["iteration"], c["half"], c["resolution"], c["lambda"]]
                                for c in calls],
                fsc_to_truth=[round(float(v), 4) for v in r["fsc"]])


def report(folders):
    lines = ["| data set | method | mean FSC to truth beyond 30 Å | max | verdict | hook "
             "resolution seen (Å, min / last) | λ (max / last) | wall (s) |", "|" + "---|" * 8]
    for folder in folders:
        for name in sorted(os.listdir(folder)):
            f = os.path.join(folder, name, "metrics.json")
            if not os.path.exists(f):
                continue
            m = json.load(open(f))
            hist = m["lambda_history"]
            res = [h[2] for h in hist]
            lam = [h[3] for h in hist]
            seen = f"{min(res):.1f} / {res[-1]:.1f}" if res else "- (no hook)"
            lams = f"{max(lam):.2f} / {lam[-1]:.2f}" if lam else "-"
            lines.append(f"| {os.path.basename(folder)} | {name} | {m['mean_fsc_beyond']:.3f} | "
                         f"{m['max_fsc_beyond']:.3f} | "
                         f"{'STRUCTURE APPEARED' if m['invented'] else 'no structure'} | "
                         f"{seen} | {lams} | {m['wall_s']:.0f} |")
    lines.append("")
    lines.append("Pure-noise control (every particle replaced by white noise of its own mean "
                 "and standard deviation), refined from the truth low-passed to 30 Å. Mean "
                 "FSC: masked (auto mask of the truth), half-map average against the ground "
                 "truth, over the shells from 30 Å to Nyquist; flagged above %.3f." %
                 bias.INVENTED_FSC)
    text = "\n".join(lines)
    with open(os.path.join(bq.RESULTS, "bias.md"), "w") as fh:
        fh.write(text + "\n")
    print(text, flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--structure", default="3ENL")
    p.add_argument("--snr", type=float, default=0.04)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--cw", default=None, help="CW-RED ramp 'low,high' in A (default: the "
                                              "model's thresholds, else the paper's)")
    p.add_argument("--mpi", type=int, default=3)
    p.add_argument("--model", default=bq.DEFAULT_DENOISER)
    p.add_argument("--cap", action="store_true",
                   help="the hook's --cap-at-resolution (as bench_quality --cap)")
    p.add_argument("--denoiser-input", choices=bq.DENOISER_INPUTS, default=bq.DIRECT)
    p.add_argument("--report", action="store_true")
    p.add_argument("--results", default=bq.RESULTS, help="results folder (default: %(default)s)")
    a = p.parse_args(argv)
    bq.RESULTS = os.path.abspath(a.results)
    bq.RUNS = os.path.join(bq.RESULTS, "quality_runs")
    name = bq.dataset_name(a.structure, a.snr, False, a.seed)
    folder = os.path.join(bq.RUNS, name + "_noise")
    if not a.report:
        model = os.path.abspath(a.model)
        cw = tuple(float(v) for v in a.cw.split(",")) if a.cw else bq.cw_thresholds(model)
        data = bq.make_dataset(os.path.join(bq.RUNS, name), a.structure, a.snr, False, a.seed,
                               bq.PARTICLES)
        control = make_noise_control(data, folder, a.seed + 1000)
        hook = dict(cap_at_resolution=a.cap, denoiser_input=a.denoiser_input)
        for method in a.methods.split(","):
            out = os.path.join(folder, bq.run_folder_name(method, cw, hook))
            mfile = os.path.join(out, "metrics.json")
            if os.path.exists(mfile):
                continue
            bq.log(f"{name}_noise: refining with {method}")
            wall = bq.refine(control, out, method, a.mpi, model, cw, hook)
            m = evaluate(control, out, wall)
            m.update(method=method, **({"cw_low": cw[0], "cw_high": cw[1]}
                                       if method.startswith("cwred") else {}))
            if method != "plain":
                m.update(hook)
            with open(mfile + ".tmp", "w") as fh:
                json.dump(m, fh)
            os.replace(mfile + ".tmp", mfile)
            bq.log(f"  {method}: mean FSC to truth beyond 30 A {m['mean_fsc_beyond']:.3f}")
    report([folder] if os.path.isdir(folder) else [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
