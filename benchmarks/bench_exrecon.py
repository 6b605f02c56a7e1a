"""Benchmark of the external-reconstruct program and of a CW-RED refinement against plain RELION.

Prints:
  1. the program's time per call at box 64 (pad 2): Gaussian mode, CW-RED with the model
     loaded in the process ("cold": TensorFlow starts every call, as RELION calls it) and
     CW-RED through a running denoiser worker ("warm"); relion_external_reconstruct for scale;
  2. the wall-time ratio of a CW-RED auto-refine (our hook + worker) to a plain RELION
     auto-refine (no hook) on the same simulated data (box 64, 2 A/px, --particles, same seed),
     both run at the same time so that they share whatever else loads the machine.

    venv/bin/python benchmarks/bench_exrecon.py [--particles 2000] [--skip-refine]
Needs RELION (relion_refine_mpi, mpirun). Part 2 takes ~20-40 min on 2 cores.
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("REDPRIOR_CORE_ONLY", "1")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from redprior.core.io.shipped import DEMO_MODEL  # noqa: E402
from redprior.core.fourier import filters as fourier  # noqa: E402
from redprior.core.io import star_particles as particles_star  # noqa: E402
from redprior.core.simulation import particles as simulate  # noqa: E402
from redprior.core.simulation import structure  # noqa: E402
from redprior.core.denoiser.model import metadata_path  # noqa: E402
from redprior.core.io.shipped import DEFAULT_DENOISER  # noqa: E402
from redprior.core.io.mrc import write_map  # noqa: E402
from redprior.core.denoiser.worker import shutdown as worker_shutdown  # noqa: E402
from redprior.core.denoiser.worker import start as worker_start  # noqa: E402
from redprior.core.relion.command import RefineSettings, refine_args  # noqa: E402

BOX, PIX = 64, 2.0
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")


def make_data(folder, n, snr, seed):
    gt = structure.potential_map(DEMO_MODEL, BOX, PIX)
    sim = simulate.simulate_particles(gt, PIX, n, snr=snr, seed=seed)
    particles_star.write_particles(sim, PIX, folder)
    write_map(os.path.join(folder, "ref.mrc"), fourier.lowpass(gt, PIX, 30.0), PIX)
    # the shipped denoiser: what a CW-RED refinement uses by default
    shutil.copy(DEFAULT_DENOISER, os.path.join(folder, "model.keras"))
    shutil.copy(metadata_path(DEFAULT_DENOISER), os.path.join(folder, "model.json"))
    return sim


def bench_refine_args(out, hook):
    """The refine protocol's relion_refine arguments (core.relion.command) for this data."""
    return refine_args(RefineSettings(output_root=out, particles_star="particles.star",
                                      reference="ref.mrc", mask_diameter_A=115.0,
                                      ini_high_A=30.0, pad=2, external_reconstruct=hook))


def timed(cmd, cwd, env=ENV):
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"FAILED: {' '.join(cmd)}\n{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}")
    return time.time() - t0


def exrecon_cmd(*args):
    return [sys.executable, os.path.join(REPO, "redprior_exrecon.py"), *args]


def start_worker(folder):
    return worker_start(os.path.join(folder, "model.keras"), os.path.join(folder, "worker.log"))


def per_call(folder):
    """Keep the files of one RELION iteration (box 64, pad 2), then time calls on them."""
    os.makedirs(os.path.join(folder, "calls"), exist_ok=True)
    hook = " ".join(exrecon_cmd("--mode", "gaussian", "--keep"))
    timed(["relion_refine", "--o", "calls/run", "--i", "particles.star", "--ref", "ref.mrc",
           "--iter", "1", "--K", "1", "--ini_high", "30", "--particle_diameter", "115",
           "--healpix_order", "1", "--offset_range", "2", "--offset_step", "1", "--norm",
           "--scale", "--pad", "2", "--external_reconstruct", "--preread_images", "--j", "1",
           "--dont_combine_weights_via_disc", "--random_seed", "1"],
          folder, dict(ENV, RELION_EXTERNAL_RECONSTRUCT_EXECUTABLE=hook))
    star = os.path.relpath(glob.glob(os.path.join(folder, "calls/run_it001*_external_reconstruct.star"))[0], folder)
    common = ["--keep", "--angpix", str(PIX), "--o", "calls/out.mrc"]
    cw = ["--mode", "red", "--model", "model.keras"]  # red: lambda > 0 whatever the FSC
    rows = [("relion_external_reconstruct", ["relion_external_reconstruct", star, "--o", "calls/rel.mrc"]),
            ("ours, Gaussian (lambda 0)", exrecon_cmd(*common, star)),
            ("ours, RED, model loaded per call (cold)", exrecon_cmd(*common, *cw, star))]
    worker, sock = start_worker(folder)
    rows.append(("ours, RED, through the worker (warm)", exrecon_cmd(*common, *cw, "--worker", sock, star)))
    print(f"\n1. Time per call at box {BOX}, pad 2 (3 runs each, seconds, whole process):")
    try:
        for label, cmd in rows:
            times = [timed(cmd, folder) for _ in range(3)]
            print(f"   {label:42s} {min(times):6.2f}  (runs: {', '.join(f'{t:.2f}' for t in times)})")
    finally:
        worker_shutdown(worker, sock)


def refinements(folder, mpi=3, concurrent=True):
    """Plain RELION (no hook) vs CW-RED (our hook + worker) on the same data and seed.

    By default both run at the same time, so that they see the same load from anything else
    on the machine and their ratio stays meaningful; --sequential runs one after the other
    (use it on an otherwise idle machine).
    """
    mpirun = ["mpirun", "--oversubscribe", "-n", str(mpi), "relion_refine_mpi"]
    for d in ("plain", "cwred"):
        os.makedirs(os.path.join(folder, d), exist_ok=True)
    print("\n2. Auto-refine wall time (healpix 1, local from 3, offset range 2 / step 1, pad 2, "
          f"{mpi} MPI ranks each, 1 thread, {'concurrently' if concurrent else 'one after the other'}):",
          flush=True)
    worker, sock = start_worker(folder)
    hook = " ".join(exrecon_cmd("--mode", "cwred", "--model", os.path.join(folder, "model.keras"),
                                "--angpix", str(PIX), "--worker", sock,
                                "--log", os.path.join(folder, "cwred", "log.jsonl")))
    jobs = [("plain", mpirun + bench_refine_args("plain/run", False), ENV),
            ("cwred", mpirun + bench_refine_args("cwred/run", True),
             dict(ENV, RELION_EXTERNAL_RECONSTRUCT_EXECUTABLE=hook))]
    times = {}
    try:
        if concurrent:
            t0 = time.time()
            procs = {name: subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.PIPE, text=True)
                     for name, cmd, env in jobs}
            pending = dict(procs)
            while pending:
                for name, proc in list(pending.items()):
                    if proc.poll() is not None:
                        times[name] = time.time() - t0
                        if proc.returncode:
                            sys.exit(f"{name} refinement failed: {proc.stderr.read()[-1500:]}")
                        del pending[name]
                time.sleep(1)
        else:
            for name, cmd, env in jobs:
                times[name] = timed(cmd, folder, env)
    finally:
        worker_shutdown(worker, sock)
    print(f"   plain RELION (no hook):        {times['plain']:7.0f} s")
    print(f"   CW-RED (hook + worker):        {times['cwred']:7.0f} s")
    print(f"   ratio CW-RED / plain:          {times['cwred'] / times['plain']:7.3f}")
    for d in ("plain", "cwred"):
        its = len(glob.glob(os.path.join(folder, d, "run_it*_optimiser.star"))) - 1
        res = _final_resolution(os.path.join(folder, d, "run_model.star"))
        print(f"   {d}: {its} iterations, final resolution {res} A")
    log = os.path.join(folder, "cwred", "log.jsonl")
    if os.path.exists(log):
        from redprior.core.prior.history import read_log
        recs = [r for r in read_log(log) if "error" not in r]
        print(f"   CW-RED hook: {len(recs)} calls, {sum(r['seconds'] for r in recs):.0f} s in total, "
              f"lambda {min(r['lambda'] for r in recs):.2f}-{max(r['lambda'] for r in recs):.2f}")


def _final_resolution(model_star):
    from emtable import Table
    if not os.path.exists(model_star):
        return "n/a"
    return f"{float(next(iter(Table(fileName=model_star, tableName='model_general'))).rlnCurrentResolution):.2f}"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--particles", type=int, default=2000)
    p.add_argument("--snr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--folder", default="")
    p.add_argument("--skip-refine", action="store_true")
    p.add_argument("--sequential", action="store_true",
                   help="run the two refinements one after the other (idle machine only)")
    args = p.parse_args()
    if shutil.which("relion_refine_mpi") is None:
        sys.exit("RELION is needed (apt-get install relion openmpi-bin)")
    folder = args.folder or tempfile.mkdtemp(prefix="redprior_bench_")
    os.makedirs(folder, exist_ok=True)
    t0 = time.time()
    make_data(folder, args.particles, args.snr, args.seed)
    print(f"data: {args.particles} particles, box {BOX}, {PIX} A/px, SNR {args.snr}, seed "
          f"{args.seed}, simulated in {time.time() - t0:.1f} s; folder {folder}")
    per_call(folder)
    if not args.skip_refine:
        refinements(folder, concurrent=not args.sequential)


if __name__ == "__main__":
    main()
