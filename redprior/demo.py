"""The main job: simulate a data set, refine it with RELION's Gaussian prior and with CW-RED,
and write a report comparing both against the ground truth.

Run through `redprior_demo` (which sets up Scipion's environment first), e.g.
    venv/bin/redprior_demo --out report
Everything runs in a real Scipion project that can be opened later in the GUI.
"""
import argparse
import json
import os
import sys
import time



def log(msg):
    print(f"[redprior demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build_parser():
    p = argparse.ArgumentParser(prog="redprior_demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="report", help="report folder (default: ./report)")
    p.add_argument("--project", default="redprior_demo", help="Scipion project name")
    p.add_argument("--particles", type=int, default=500)
    p.add_argument("--box", type=int, default=48)
    p.add_argument("--pixel", type=float, default=2.5, help="A/px (2.5: Nyquist 5 A)")
    p.add_argument("--snr", type=float, default=0.5)
    p.add_argument("--ctf", action="store_true", help="simulate a CTF (defocus 0.5-2 um)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--mpi", type=int, default=3)
    p.add_argument("--denoiser", default="",
                   help=".keras denoiser with its .json (default: the one shipped in "
                        "redprior/data/denoiser)")
    return p


def _new(project, cls, label, **kwargs):
    # pyworkflow 3.11's Step.__init__ drops the objLabel keyword: set the label afterwards
    prot = project.newProtocol(cls, **kwargs)
    prot.setObjLabel(label)
    return prot


def _wait(project, prot):
    project.launchProtocol(prot, wait=True)
    project._updateProtocol(prot)
    if prot.isFailed():
        log(f"{prot.getObjLabel()} FAILED: {prot.getErrorMessage()}")
        for line in prot.getLogsLastLines(30):
            print("   ", line)
        sys.exit(1)
    return prot


def main(argv=None):
    args = build_parser().parse_args(argv)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)

    from pyworkflow.project import Manager
    from pwem.protocols import ProtImportPdb
    from redprior import constants as C
    from redprior.core.simulation import structure
    from redprior.protocols import ProtRedPriorRefine, ProtRedPriorSimulate
    from redprior.protocols.protocol_refine import PRIOR_CWRED, PRIOR_GAUSSIAN

    t_start = time.time()
    manager = Manager()
    if manager.hasProject(args.project):
        manager.deleteProject(args.project)
    project = manager.createProject(args.project)
    os.chdir(project.path)  # project paths are relative to the cwd
    log(f"Scipion project {project.path}")

    imp = _new(project, ProtImportPdb, "import model",
               inputPdbData=ProtImportPdb.IMPORT_FROM_FILES,
               pdbFile=structure.DEMO_MODEL, skipChimera=True)
    _wait(project, imp)
    log(f"imported {os.path.basename(structure.DEMO_MODEL)}")

    sim = _new(project, ProtRedPriorSimulate, "simulate particles",
               inputAtomStruct=imp.outputPdb, boxSize=args.box,
               pixelSize=args.pixel, numberOfParticles=args.particles,
               noiseMode=C.NOISE_BY_SNR, snr=args.snr, doCtf=args.ctf,
               defocusMin=5000.0, defocusMax=20000.0, seed=args.seed)
    _wait(project, sim)
    info = sim.getSimulationInfo()
    log(f"simulated {args.particles} particles, box {args.box}, {args.pixel} A/px, "
        f"SNR {info.get('snr_measured', float('nan')):.4f}")

    results = []
    for label, mode in (("RELION Gaussian prior", PRIOR_GAUSSIAN), ("CW-RED", PRIOR_CWRED)):
        log(f"refining with the {label} (relion_refine_mpi, {args.mpi} MPI ranks)...")
        prot = _new(project, ProtRedPriorRefine, label,
                    inputParticles=sim.outputParticles,
                    referenceVolume=sim.outputInitialModel,
                    priorMode=mode, numberOfMpi=args.mpi,
                    denoiserFile=args.denoiser)
        t0 = time.time()
        _wait(project, prot)
        s = prot.getSummaryDict()
        log(f"{label}: {s['final_resolution']:.2f} A after {s['iterations']} iterations, "
            f"{time.time() - t0:.0f} s")
        results.append((label, prot))

    # validation of each refinement against the truth, and the consensus of the two engines
    from redprior.protocols import ProtRedPriorConsensus, ProtRedPriorValidate
    validations = []
    for label, prot in results:
        val = _new(project, ProtRedPriorValidate, f"validate {label}",
                   inputVolume=prot.outputVolume, groundTruth=sim.outputVolume,
                   trueParticles=sim.outputParticles,
                   refinedParticles=prot.outputParticles)
        _wait(project, val)
        validations.append(val)
        log(f"validated {label}: report {val.getReportPath()}")
    cons = _new(project, ProtRedPriorConsensus, "compare engines")
    for _, prot in results:
        cons.inputVolumes.append(prot.outputVolume)
        cons.inputParticles.append(prot.outputParticles)
    _wait(project, cons)
    log(f"consensus of the engines: report {cons.getReportPath()}")

    summary = write_report(out, sim, info, results, args, validations, cons)
    log(f"report written to {out} (total {time.time() - t_start:.0f} s)")
    for r in summary["refinements"]:
        log(f"  {r['method']:9s} half-map {r['halfmap_resolution_0143']:.2f} A | vs truth "
            f"0.5: {r['gt_resolution_05']:.2f} A, 0.143: {r['gt_resolution_0143']:.2f} A, "
            f"mean FSC {r['gt_fsc_mean']:.3f}")
    return 0


def _res(curve, box, pixel, threshold):
    from redprior.core.fourier.fsc import read_resolution
    res = read_resolution(curve, box, pixel, threshold)
    return float(res.bound_A), bool(res.crossed)


def write_report(out, sim, info, results, args, validations=(), consensus=None):
    """summary.json, fsc.png and index.html comparing the refinements with the truth."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from redprior.core.fourier.fsc import fsc, shell_resolutions
    from redprior.core.geometry.masks import solvent_mask
    from redprior.core.io.mrc import read_map

    gt, _ = read_map(sim.outputVolume.getFileName())
    box, pix = gt.shape[0], args.pixel
    mask = solvent_mask(gt, pix)
    freq = 1.0 / shell_resolutions(box, pix)
    refinements = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (label, prot), color in zip(results, ("tab:blue", "tab:red")):
        s = prot.getSummaryDict()
        vol = prot.outputVolume
        m, _ = read_map(vol.getFileName())
        h1, h2 = [str(f) for f in vol.getHalfMaps(asList=True)]
        a, _ = read_map(h1)
        b, _ = read_map(h2)
        half = fsc(a, b)
        truth = fsc(gt * mask, m * mask)
        r_half, _ = _res(half, box, pix, 0.143)
        r05, c05 = _res(truth, box, pix, 0.5)
        r0143, c0143 = _res(truth, box, pix, 0.143)
        refinements.append({
            "method": s["method"], "label": label,
            "halfmap_resolution_0143": r_half,
            "gt_resolution_05": r05, "gt_resolution_0143": r0143,
            # one number for the whole curve: the mean masked FSC to the truth over the
            # shells 1..Nyquist (both maps share them), so gains below Nyquist-limited
            # crossings still show
            "gt_fsc_mean": float(np.mean(truth[1:box // 2 + 1])),
            "gt_fsc_crosses": {"0.5": c05, "0.143": c0143},
            "relion_final_resolution": s["final_resolution"],
            "iterations": s["iterations"], "wall_seconds": s["wall_seconds"],
            "lambda_history": s["lambda_history"],
            "denoiser": _denoiser_description(prot),
        })
        ax.plot(freq, truth, color=color, label=f"{label}: FSC to truth (masked)")
        ax.plot(freq, half, color=color, ls=":", label=f"{label}: half-map FSC")
    for thr in (0.5, 0.143):
        ax.axhline(thr, color="grey", lw=0.5)
    ax.set_xlabel("spatial frequency (1/A)")
    ax.set_ylabel("FSC")
    ax.set_ylim(-0.05, 1.02)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "fsc.png"), dpi=110)
    plt.close(fig)

    for r, val in zip(refinements, validations):
        res = val.getResults() or {}
        r["validation"] = {"overestimation": (res.get("overestimation") or {}).get("verdict"),
                           "angular_error_deg": (res.get("poses") or {}).get("angular", {}),
                           "shift_error_A": (res.get("poses") or {}).get("shift", {}),
                           "report": val.getReportPath()}
    summary = {
        "dataset": {"box": box, "pixel_size": pix, "particles": args.particles,
                    "snr": info.get("snr_measured"), "snr_requested": args.snr,
                    "ctf": bool(args.ctf), "model": info.get("model", {}),
                    "seed": args.seed},
        "refinements": refinements,
        "consensus": _consensus_summary(consensus),
        "project": os.getcwd(),
    }
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    rows = "".join(
        f"<tr><td>{r['label']}</td><td>{r['halfmap_resolution_0143']:.2f}</td>"
        f"<td>{r['gt_resolution_05']:.2f}</td><td>{r['gt_resolution_0143']:.2f}</td>"
        f"<td>{r['gt_fsc_mean']:.3f}</td><td>{r['iterations']}</td>"
        f"<td>{r['wall_seconds']:.0f}</td></tr>" for r in refinements)
    with open(os.path.join(out, "index.html"), "w") as fh:
        fh.write(f"""<html><head><title>redprior demo</title></head><body>
<h1>RELION Gaussian prior vs CW-RED</h1>
<p>{args.particles} simulated particles, box {box}, {pix} A/px, SNR {summary['dataset']['snr']:.4f}.
Denoiser: {refinements[-1]['denoiser']}</p>
<table border=1 cellpadding=4><tr><th>prior</th><th>half-map FSC 0.143 (A)</th>
<th>FSC to truth 0.5 (A)</th><th>FSC to truth 0.143 (A)</th><th>mean FSC to truth</th>
<th>iterations</th><th>seconds</th></tr>
{rows}</table><img src="fsc.png"></body></html>
""")
    return summary


def _consensus_summary(prot):
    if prot is None:
        return {}
    s = (prot.getResult() or {}).get("summary", {})
    keep = ("engines", "n_common", "n_agree", "n_disagree", "fraction_agree", "pairs")
    return {**{k: s[k] for k in keep if k in s}, "report": prot.getReportPath()}


def _denoiser_description(prot):
    from redprior.core.denoiser.model import read_metadata
    path = prot.getDenoiserPath()
    if not path:
        return "none (lambda = 0)"
    try:
        meta = read_metadata(path)
        return f"{meta.get('name', os.path.basename(path))}: {meta.get('description', '')}"
    except Exception:  # the report must not fail on a description
        return os.path.basename(path)


if __name__ == "__main__":
    sys.exit(main())
