"""Benchmark of the external-reconstruct program and of a CW-RED refinement against plain RELION.

Prints:
  1. per call, on real RELION iteration files this script makes (relion_refine, 1 iteration,
     the whole Fourier box filled) at boxes 64, 128 and 256, pad 1 and 2: wall time and peak
     resident memory of relion_external_reconstruct; of our program at lambda 0 (through
     RELION's program on our inputs, the default, and through the numpy re-implementation);
     of our program with lambda > 0 (RED) with the denoiser worker warm; of the network pass
     alone and the worker's peak memory; and of both halves arriving at once. Ratios are
     against relion_external_reconstruct measured in the same run;
  2. the wall-time ratio of a CW-RED auto-refine (our hook + worker) to a plain RELION
     auto-refine (no hook) on the same simulated data (box 64, or --refine-box 128; the same
     128 A field of view, so 2 or 1 A/px unless --refine-pixel; --particles, same seed),
     both run at the same time so that they share whatever else loads the machine
     (--sequential: one after the other). --with-lambda0 adds a refinement through the hook at
     lambda 0, which takes RELION's own path: lambda 0 / plain is the hook's own cost, CW-RED /
     lambda 0 the network plus the path the prior takes (iterations per healpix order printed).

    venv/bin/python benchmarks/bench_exrecon.py [--boxes 64,128,256] [--pads 1,2]
                                                [--particles 2000] [--skip-refine]
Needs RELION (relion_refine_mpi, mpirun) and GNU time (/usr/bin/time). Part 1 takes ~15 min
at boxes up to 256, part 2 ~20-40 min on 2 cores. Peak memory is GNU time's maximum resident
set of the call's process tree (the largest process: our program or the RELION program it
runs, which never overlap in their large arrays).
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
REFINE_PIX = PIX  # part 2's pixel size (--refine-pixel)
INITIAL_LOWPASS_A = 30.0
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")


def make_data(folder, n, snr, seed):
    gt = structure.potential_map(DEMO_MODEL, BOX, REFINE_PIX)  # --refine-box, --refine-pixel
    sim = simulate.simulate_particles(gt, REFINE_PIX, n, snr=snr, seed=seed)
    particles_star.write_particles(sim, REFINE_PIX, folder)
    write_map(os.path.join(folder, "ref.mrc"), fourier.lowpass(gt, REFINE_PIX, INITIAL_LOWPASS_A),
              REFINE_PIX)
    # the shipped denoiser: what a CW-RED refinement uses by default
    shutil.copy(DEFAULT_DENOISER, os.path.join(folder, "model.keras"))
    shutil.copy(metadata_path(DEFAULT_DENOISER), os.path.join(folder, "model.json"))
    return sim


def bench_refine_args(out, hook):
    """The refine protocol's relion_refine arguments (core.relion.command) for this data."""
    return refine_args(RefineSettings(output_root=out, particles_star="particles.star",
                                      reference="ref.mrc",
                                      mask_diameter_A=0.9 * BOX * REFINE_PIX,
                                      ini_high_A=INITIAL_LOWPASS_A, pad=2,
                                      external_reconstruct=hook))


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


def measured(cmd, cwd, env=ENV):
    """(wall s, peak resident MB) of one command, by GNU time."""
    proc = subprocess.run(["/usr/bin/time", "-f", "TIME %e %M"] + cmd, cwd=cwd, env=env,
                          capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"FAILED: {' '.join(cmd)}\n{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}")
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("TIME ")][-1]
    wall, kb = line.split()[1:]
    return float(wall), int(kb) / 1024.0


def iteration_files(folder, box, pad, n):
    """RELION's files of one call at this box and pad (kept by our Gaussian hook)."""
    sub = os.path.join(folder, f"box{box}_pad{pad}")
    stars = glob.glob(os.path.join(sub, "run_it001*_external_reconstruct.star"))
    if stars:
        return sub, os.path.basename(stars[0])
    os.makedirs(sub, exist_ok=True)
    gt = structure.potential_map(DEMO_MODEL, box, PIX)
    sim = simulate.simulate_particles(gt, PIX, n, snr=5.0, seed=3)
    particles_star.write_particles(sim, PIX, sub)
    write_map(os.path.join(sub, "ref.mrc"), fourier.lowpass(gt, PIX, INITIAL_LOWPASS_A), PIX)
    hook = " ".join(exrecon_cmd("--mode", "gaussian", "--keep"))
    # --ini_high just above Nyquist: RELION's current size is the whole box at once
    timed(["relion_refine", "--o", "./run", "--i", "particles.star", "--ref", "ref.mrc",
           "--iter", "1", "--K", "1", "--ini_high", f"{2.1 * PIX:g}", "--particle_diameter",
           f"{0.9 * box * PIX:g}", "--healpix_order", "1", "--offset_range", "2",
           "--offset_step", "1", "--norm", "--scale", "--pad", str(pad), "--oversampling", "1",
           "--external_reconstruct", "--preread_images", "--j", "1",
           "--dont_combine_weights_via_disc", "--random_seed", "1"],
          sub, dict(ENV, RELION_EXTERNAL_RECONSTRUCT_EXECUTABLE=hook))
    return sub, os.path.basename(glob.glob(os.path.join(sub, "run_it001*_external_reconstruct.star"))[0])


def _worker_peak_mb(proc):
    with open(f"/proc/{proc.pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def network_pass(sock, box, reps):
    """Seconds of one f(x) through the warm worker (the socket round trip included)."""
    import numpy as np

    from redprior.core.denoiser.worker import denoise_remote
    vol = np.random.default_rng(0).standard_normal((box, box, box)).astype(np.float32)
    times = []
    for _ in range(reps):
        t0 = time.time()
        denoise_remote(sock, vol, PIX)
        times.append(time.time() - t0)
    return min(times)


def per_call(folder, boxes, pads, reps):
    """Section 1 of the benchmark (see the module docstring)."""
    import concurrent.futures

    common = ["--keep", "--angpix", str(PIX)]
    red = ["--mode", "red", "--model", os.path.join(folder, "model.keras")]  # red: lambda > 0 whatever the FSC
    worker, sock = start_worker(folder)
    print("\n1. One call of the external-reconstruct program (min of "
          f"{reps} runs at box <= 128, 1 above; wall s / peak MB; x = ratio to "
          "relion_external_reconstruct in this run):", flush=True)
    head = (f"   {'box':>4} {'pad':>3} | {'relion_ext.':>14} | {'ours λ=0':>20} | "
            f"{'ours λ=0 numpy':>20} | {'ours RED warm':>20} | {'network':>7} | "
            f"{'both halves':>11} | {'worker MB':>9}")
    print(head + "\n   " + "-" * (len(head) - 3), flush=True)
    try:
        for box in boxes:
            for pad in pads:
                sub, star = iteration_files(folder, box, pad, 200 if box <= 128 else 60)
                n = reps if box <= 128 else 1
                out = ["--o", "out.mrc"]

                def best(cmd):  # RELION's files are relative to its working folder
                    runs = [measured(cmd, sub) for _ in range(n)]
                    return min(r[0] for r in runs), max(r[1] for r in runs)
                rel = best(["relion_external_reconstruct", star, "--o", "rel.mrc"])
                ours = best(exrecon_cmd(*common, *out, star))
                numpy_ = best(exrecon_cmd(*common, *out, "--reconstruction", "numpy", star))
                cw = best(exrecon_cmd(*common, *red, *out, "--worker", sock, star))
                net = network_pass(sock, box, n)
                # both halves at once: two RED calls on the same files, started together
                t0 = time.time()
                with concurrent.futures.ThreadPoolExecutor(2) as pool:
                    for i in (1, 2):
                        pool.submit(measured, exrecon_cmd(
                            *common, *red, "--worker", sock, "--o", f"both{i}.mrc", star), sub)
                both = time.time() - t0

                def cell(r):
                    return f"{r[0]:6.1f} ({r[0] / rel[0]:3.1f}x) {r[1]:5.0f}MB"
                print(f"   {box:>4} {pad:>3} | {rel[0]:5.1f}s {rel[1]:5.0f}MB | {cell(ours)} | "
                      f"{cell(numpy_)} | {cell(cw)} | {net:6.1f}s | {both:6.1f}s "
                      f"({both / cw[0]:3.1f}x) | {_worker_peak_mb(worker):8.0f}", flush=True)
    finally:
        worker_shutdown(worker, sock)
    print("   RED warm = the lambda 0 call + x~ (direct B/K, the hook's default --denoiser-input)"
          " + the network pass + B' = B + F[f(x~)]/tau'. 'both halves': two RED calls started"
          " together, wall time of both (x: ratio to one call).", flush=True)


def refinements(folder, mpi=3, concurrent=True, lambda0=False):
    """Plain RELION (no hook) vs CW-RED (our hook + worker) on the same data and seed.

    By default both run at the same time, so that they see the same load from anything else
    on the machine and their ratio stays meaningful; --sequential runs one after the other
    (use it on an otherwise idle machine). lambda0 adds a third run through the hook at
    lambda 0 (RELION's own reconstruction, so RELION's own path to convergence): its ratio
    to plain is the hook's cost alone, CW-RED's ratio to it what the prior changes.
    """
    mpirun = ["mpirun", "--oversubscribe", "-n", str(mpi), "relion_refine_mpi"]
    names = ["plain", "cwred"] + (["lambda0"] if lambda0 else [])
    for d in names:
        os.makedirs(os.path.join(folder, d), exist_ok=True)
    print("\n2. Auto-refine wall time (healpix 1, local from 3, offset range 2 / step 1, pad 2, "
          f"{mpi} MPI ranks each, 1 thread, {'concurrently' if concurrent else 'one after the other'}):",
          flush=True)
    worker, sock = start_worker(folder)
    hook = " ".join(exrecon_cmd("--mode", "cwred", "--model", os.path.join(folder, "model.keras"),
                                "--angpix", str(REFINE_PIX), "--worker", sock,
                                "--log", os.path.join(folder, "cwred", "log.jsonl")))
    hook0 = " ".join(exrecon_cmd("--mode", "gaussian", "--angpix", str(REFINE_PIX),
                                 "--log", os.path.join(folder, "lambda0", "log.jsonl")))
    jobs = [("plain", mpirun + bench_refine_args("plain/run", False), ENV),
            ("cwred", mpirun + bench_refine_args("cwred/run", True),
             dict(ENV, RELION_EXTERNAL_RECONSTRUCT_EXECUTABLE=hook)),
            ("lambda0", mpirun + bench_refine_args("lambda0/run", True),
             dict(ENV, RELION_EXTERNAL_RECONSTRUCT_EXECUTABLE=hook0))][:len(names)]
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
                print(f"   ({name} done: {times[name]:.0f} s)", flush=True)
    finally:
        worker_shutdown(worker, sock)
    print(f"   plain RELION (no hook):        {times['plain']:7.0f} s")
    print(f"   CW-RED (hook + worker):        {times['cwred']:7.0f} s")
    print(f"   ratio CW-RED / plain:          {times['cwred'] / times['plain']:7.3f}")
    if lambda0:
        print(f"   hook at lambda 0:              {times['lambda0']:7.0f} s")
        print(f"   ratio lambda 0 / plain:        {times['lambda0'] / times['plain']:7.3f}"
              "   (the hook's cost on RELION's own path)")
        print(f"   ratio CW-RED / lambda 0:       {times['cwred'] / times['lambda0']:7.3f}"
              "   (the network and the path the prior takes)")
    for d in names:
        its = len(glob.glob(os.path.join(folder, d, "run_it*_optimiser.star"))) - 1
        res = _final_resolution(os.path.join(folder, d, "run_model.star"))
        print(f"   {d}: {its} iterations ({times[d] / max(its, 1):.1f} s each), final resolution "
              f"{res} A; iterations per healpix order {_healpix_orders(os.path.join(folder, d))}"
              "; per iteration (A): " + " ".join(_trajectory(os.path.join(folder, d))))
        if res == "n/a" or float(res) >= INITIAL_LOWPASS_A / 2:
            print(f"   WARNING: {d} ended at half the initial model's {INITIAL_LOWPASS_A:g} A "
                  "low-pass or worse: the ratio says little about a refinement that converges "
                  "to a real map; use more particles or a higher --snr")
    for d in names[1:]:
        _hook_split(os.path.join(folder, d, "log.jsonl"), d)


def _hook_split(log, name):
    """Where the hook's time went (its log's seconds, relion_seconds, denoiser_seconds)."""
    if not os.path.exists(log):
        return
    from redprior.core.prior.history import read_log
    recs = [r for r in read_log(log) if "error" not in r]
    if not recs:
        return
    total = sum(r['seconds'] for r in recs)
    prog = sum(r.get('relion_seconds', 0) for r in recs)
    net = sum(r.get('denoiser_seconds', 0) for r in recs)
    print(f"   {name} hook: {len(recs)} calls, {total:.0f} s in total (RELION's program "
          f"{prog:.0f} s, denoiser {net:.0f} s, the rest {total - prog - net:.0f} s), "
          f"lambda {min(r['lambda'] for r in recs):.2f}-{max(r['lambda'] for r in recs):.2f}")


def _healpix_orders(folder):
    """{healpix order: iterations} from the run's sampling files (RELION's path)."""
    from emtable import Table
    counts = {}
    for f in sorted(glob.glob(os.path.join(folder, "run_it*_sampling.star")))[1:]:
        row = next(iter(Table(fileName=f, tableName="sampling_general")))
        order = int(row.rlnHealpixOrder)
        counts[order] = counts.get(order, 0) + 1
    return counts


def _trajectory(folder):
    """RELION's resolution per iteration (rlnCurrentResolution of half 1's model.star)."""
    from emtable import Table
    out = []
    for f in sorted(glob.glob(os.path.join(folder, "run_it*_half1_model.star")))[1:]:
        general = next(iter(Table(fileName=f, tableName="model_general")))
        out.append(f"{float(general.rlnCurrentResolution):.1f}")
    return out


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
    p.add_argument("--skip-calls", action="store_true")
    p.add_argument("--boxes", default="64,128,256")
    p.add_argument("--refine-box", type=int, default=64,
                   help="box of the whole-refinement comparison (64 or 128)")
    p.add_argument("--refine-pixel", type=float, default=0.0,
                   help="pixel size (A) of the whole-refinement comparison; default: the "
                        "field of view of box 64 at 2 A/px (128 A), so at box 128 1 A/px")
    p.add_argument("--pads", default="1,2")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--sequential", action="store_true",
                   help="run the refinements one after the other (idle machine only)")
    p.add_argument("--with-lambda0", action="store_true",
                   help="also refine through the hook at lambda 0: separates the hook's own "
                        "cost from the path the prior takes")
    args = p.parse_args()
    global BOX, REFINE_PIX
    BOX = args.refine_box
    REFINE_PIX = args.refine_pixel or PIX * 64 / BOX
    if shutil.which("relion_refine_mpi") is None:
        sys.exit("RELION is needed (apt-get install relion openmpi-bin)")
    folder = args.folder or tempfile.mkdtemp(prefix="redprior_bench_")
    os.makedirs(folder, exist_ok=True)
    t0 = time.time()
    make_data(folder, args.particles, args.snr, args.seed)
    print(f"data: {args.particles} particles, box {BOX}, {REFINE_PIX:g} A/px, SNR {args.snr}, seed "
          f"{args.seed}, simulated in {time.time() - t0:.1f} s; folder {folder}")
    if not args.skip_calls:
        per_call(folder, [int(b) for b in args.boxes.split(",")],
                 [int(x) for x in args.pads.split(",")], args.reps)
    if not args.skip_refine:
        refinements(folder, concurrent=not args.sequential, lambda0=args.with_lambda0)


if __name__ == "__main__":
    main()
