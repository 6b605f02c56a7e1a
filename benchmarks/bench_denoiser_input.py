"""Does the denoiser's input need RELION's gridding? Direct x~ = B/K against the gridded one.

A Gaussian-mode auto-refine with --keep (the quality benchmark's data set, e.g. 3ENL at SNR
0.06, box 64, 2000 particles) leaves RELION's B, K and STAR of every call. For the half-1 calls
of the chosen iterations this prints, between the two ways of computing the denoiser's input
(core.relion.reconstruct.direct_map, and relion_external_reconstruct --no_map):
  * x~ and f(x~) (the shipped denoiser): relative RMS difference and correlation;
  * the RED update (lambda 1) RELION would get back: relative RMS difference, correlation,
    and each one's mean FSC to the ground truth up to RELION's current size;
  * the time of each x~.

    venv/bin/python benchmarks/bench_denoiser_input.py [--snr 0.06] [--iterations 1,4,8]

Takes ~10 min on 2 cores (the refinement stops after the last iteration asked for).
"""
import argparse
import glob
import os
import subprocess
import sys
import time

os.environ.setdefault("REDPRIOR_CORE_ONLY", "1")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import bench_quality as bq  # noqa: E402
from redprior.core.fourier.fsc import correlation, fsc  # noqa: E402
from redprior.core.io.mrc import read_map  # noqa: E402
from redprior.core.prior.options import hook_args, hook_command  # noqa: E402
from redprior.core.prior.update import red_numerator  # noqa: E402
from redprior.core.fourier.pruned import add_band_block  # noqa: E402
from redprior.core.relion.command import RefineSettings, refine_args  # noqa: E402
from redprior.core.relion.contract import load_fourier, read_job  # noqa: E402
from redprior.core.relion.program import RelionProgram  # noqa: E402
from redprior.core.relion.reconstruct import direct_map  # noqa: E402


def rel(a, b):
    return float(np.sqrt(np.mean((a - b) ** 2) / np.mean(b ** 2)))


def _plus(b, block):
    """B + the numerator term (a band block, core.fourier.pruned), B left as it is."""
    out = b.copy()
    add_band_block(out, block)
    return out


def keep_run(data, out, last_iteration):
    """Gaussian-mode auto-refine with --keep until `last_iteration`'s files exist."""
    os.makedirs(out, exist_ok=True)
    want = os.path.join(out, f"run_it{last_iteration:03d}_half1_class001_external_reconstruct.star")
    if os.path.exists(want):
        return
    settings = RefineSettings(output_root=os.path.relpath(os.path.join(out, "run"), data),
                              particles_star="particles.star", reference="initial_model.mrc",
                              mask_diameter_A=0.9 * bq.BOX * bq.PIX, ini_high_A=bq.INITIAL_LOWPASS_A,
                              pad=2, external_reconstruct=True, ctf=False)
    env = dict(bq.ENV, RELION_EXTERNAL_RECONSTRUCT_EXECUTABLE=hook_command(hook_args(
        "gaussian", bq.PIX, os.path.join(out, "log.jsonl"), keep=True)))
    cmd = ["mpirun", "-np", "3", "relion_refine_mpi"] + refine_args(settings)
    with open(os.path.join(out, "relion.log"), "w") as fh:
        proc = subprocess.Popen(cmd, cwd=data, env=env, stdout=fh, stderr=subprocess.STDOUT)
        t0 = time.time()
        # bounded: a box-64 iteration takes ~1-2 min on 2 cores
        while not os.path.exists(want) and proc.poll() is None and time.time() - t0 < 7200:
            time.sleep(5)
        time.sleep(10)  # the call that wrote the STAR is still reading it
        proc.terminate()
        proc.wait(timeout=60)
    if not os.path.exists(want):
        raise RuntimeError(f"the refinement ended before iteration {last_iteration}; see "
                           f"{out}/relion.log")


def compare(star, gt, net):
    job = read_job(star)
    with RelionProgram(job, 5) as program:
        t = time.time()
        gridded = program.unregularised_map()
        t_gridded = time.time() - t
        b, k = load_fourier(job, np.float32)
        t = time.time()
        direct = direct_map(job, b, k)
        t_direct = time.time() - t
        f_g, f_d = net(gridded, bq.PIX), net(direct, bq.PIX)
        u_g = program.map_reconstruction(_plus(b, red_numerator(job, k, f_g, 1.0, 5)))
        u_d = program.map_reconstruction(_plus(b, red_numerator(job, k, f_d, 1.0, 5)))
        u_0 = program.map_reconstruction()
    n = job.r_max
    truth = [float(fsc(u, gt)[1:n + 1].mean()) for u in (u_0, u_g, u_d)]
    print(f"| {job.iteration} | {n} | {rel(direct, gridded):.3f} / {correlation(direct, gridded):.4f} "
          f"| {t_gridded:.2f} s / {t_direct:.2f} s | {rel(f_d, f_g):.3f} / {correlation(f_d, f_g):.4f} "
          f"| {rel(u_d, u_g):.4f} / {correlation(u_d, u_g):.5f} "
          f"| {truth[0]:.4f} / {truth[1]:.4f} / {truth[2]:.4f} |", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--structure", default="3ENL")
    p.add_argument("--snr", type=float, default=0.06)
    p.add_argument("--iterations", default="1,4,8")
    p.add_argument("--folder", default="/tmp/redprior_denoiser_input")
    a = p.parse_args(argv)
    from redprior.core.denoiser.model import Denoiser
    from redprior.core.io.shipped import DEFAULT_DENOISER

    its = [int(i) for i in a.iterations.split(",")]
    name = bq.dataset_name(a.structure, a.snr, False, 1)
    data = bq.make_dataset(os.path.join(bq.RUNS, name), a.structure, a.snr, False, 1,
                           bq.PARTICLES)
    out = os.path.join(a.folder, name)
    keep_run(data, out, max(its))
    gt, _ = read_map(os.path.join(data, "ground_truth.mrc"))
    net = Denoiser(DEFAULT_DENOISER)
    os.chdir(data)  # RELION's STAR files name their inputs relative to its working folder
    print(f"{name}: direct against gridded x~ (half 1; relative RMS difference / correlation)")
    print("| iteration | RELION's r_max | x~ | x~ time gridded / direct | f(x~) | RED update "
          "| update's mean FSC to truth: gaussian / gridded / direct |")
    print("|---|---|---|---|---|---|---|")
    for it in its:
        star = glob.glob(os.path.join(out, f"run_it{it:03d}_half1_class001_external_reconstruct.star"))[0]
        compare(star, gt, net)
    return 0


if __name__ == "__main__":
    sys.exit(main())
