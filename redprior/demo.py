"""The main job: simulate a data set, refine it with RELION's Gaussian prior and with CW-RED,
and write a report comparing both against the ground truth.

Run through `redprior_demo` (which sets up Scipion's environment first), e.g.
    venv/bin/redprior_demo --out report
Everything runs in a real Scipion project that can be opened later in the GUI.
"""
import argparse
import os
import sys
import time


def log(msg):
    print(f"[redprior demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build_parser():
    p = argparse.ArgumentParser(prog="redprior_demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="report", help="report folder (default: ./report)")
    p.add_argument("--project", default=None,
                   help="Scipion project name (default: redprior_demo, or redprior_demo_2, "
                        "_3, ... when that exists; a name given here that exists is refused "
                        "unless --replace)")
    p.add_argument("--particles", type=int, default=500)
    p.add_argument("--box", type=int, default=48)
    p.add_argument("--pixel", type=float, default=2.5, help="A/px (2.5: Nyquist 5 A)")
    p.add_argument("--snr", type=float, default=0.5)
    p.add_argument("--ctf", action="store_true", help="simulate a CTF (defocus 0.5-2 um)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--mpi", type=int, default=3)
    p.add_argument("--replace", action="store_true",
                   help="delete an existing project of that name first (default: refuse)")
    p.add_argument("--denoiser", default="",
                   help=".keras denoiser with its .json (default: the one shipped in "
                        "redprior/data/denoiser)")
    return p


def _new(project, cls, label, **kwargs):
    # pyworkflow 3.11's Step.__init__ drops the objLabel keyword: set the label afterwards
    prot = project.newProtocol(cls, **kwargs)
    prot.setObjLabel(label)
    return prot


def _wait(project, prot, progress=None):
    """Run a protocol; with `progress` (a function giving the hook's log file), print each
    iteration's resolution and lambda as RELION reaches it."""
    if progress is None:
        project.launchProtocol(prot, wait=True)
    else:
        project.launchProtocol(prot)
        _follow(project, prot, progress())
    project._updateProtocol(prot)
    if prot.isFailed():
        log(f"{prot.getObjLabel()} FAILED: {prot.getErrorMessage()}")
        for line in prot.getLogsLastLines(30):
            print("   ", line)
        sys.exit(1)
    return prot


def _follow(project, prot, logPath, poll=5.0, grace=120.0):
    """Print the hook's log lines (iteration, resolution, lambda) while `prot` runs.

    Bounded: stops when the protocol is no longer active, or when its process has been gone
    for `grace` seconds while the project still says it runs (a killed run).
    """
    from redprior.core.prior.history import read_log
    shown, gone_since = 0, None
    while True:
        project._updateProtocol(prot)
        records = read_log(logPath)
        for r in records[shown:]:
            if "error" in r:
                log(f"  hook error: {r['error']}")
            else:
                log(f"  iteration {r['iteration']} half {r['half'] or 'joined'}: resolution "
                    f"{r.get('resolution_text') or r['resolution']}, lambda {r['lambda']:.3f}")
        shown = len(records)
        if not prot.isActive():
            return
        gone_since = None if _alive(prot.getPid()) else (gone_since or time.time())
        if gone_since and time.time() - gone_since > grace:
            log(f"{prot.getObjLabel()}: its process is gone but the project still says it "
                "runs; stopping here (open the project to see its log).")
            return
        time.sleep(poll)


def _alive(pid):
    from redprior.core.denoiser.worker import process_alive

    # no pid yet: not started, the project has not stored it
    return True if not pid else process_alive(int(pid))


def check_args(args):
    """Refuse bad options before anything runs (no project is touched)."""
    from redprior.core.io.shipped import DEFAULT_DENOISER
    from redprior.core.prior.settings import PriorSettings, prior_problems
    from redprior.core.simulation.limits import simulation_problems
    problems = []
    if args.mpi < 3:
        problems.append(f"--mpi {args.mpi}: relion_refine_mpi --split_random_halves needs at "
                        "least 3 MPI ranks (1 leader + 2 halves); use --mpi 3 or more.")
    problems += simulation_problems(args.box, args.pixel, args.particles, snr=args.snr)
    problems += prior_problems(PriorSettings("cwred", args.pixel,
                                             model=args.denoiser or DEFAULT_DENOISER))
    if problems:
        sys.exit("redprior_demo: " + "\n  ".join(problems))


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_args(args)
    out = os.path.abspath(args.out)
    t_start = time.time()
    project = open_project(args.project, args.replace)
    log(f"Scipion project {project.path}")
    sim, info = simulate(project, args)
    refinements = [(label, refine(project, sim, label, mode, args))
                   for label, mode in (("RELION Gaussian prior", "gaussian"), ("CW-RED", "cwred"))]
    validations = [validate(project, sim, label, prot) for label, prot in refinements]
    cons = compare(project, refinements)
    summary = report(out, sim, info, refinements, validations, cons, args)
    log(f"report written to {out}/index.html (total {time.time() - t_start:.0f} s)")
    for r in summary["refinements"]:
        log(f"  {r['label']}: half-map FSC 0.143 {r['halfmap_resolution_text']} | FSC to truth "
            f"0.5 {r['gt_resolution_05_text']}, 0.143 {r['gt_resolution_0143_text']}, "
            f"mean {r['gt_fsc_mean']:.3f}")
    return 0


DEFAULT_PROJECT = "redprior_demo"


def free_project_name(exists, name=DEFAULT_PROJECT):
    """`name`, or name_2, name_3, ... : the first for which exists(name) is False."""
    k, candidate = 1, name
    while exists(candidate):
        k += 1
        candidate = f"{name}_{k}"
    return candidate


def open_project(name, replace):
    """A new Scipion project; an existing one is never touched unless --replace.

    No name given: redprior_demo, or the next free redprior_demo_N (so the README's command
    can be run again). A given name that exists is refused without --replace."""
    from pyworkflow.project import Manager
    manager = Manager()
    if name is None:
        name = DEFAULT_PROJECT if replace else free_project_name(manager.hasProject)
        if name != DEFAULT_PROJECT:
            log(f"project {DEFAULT_PROJECT} exists and is kept; this run is {name}")
    if manager.hasProject(name):
        if not replace:
            sys.exit(f"redprior_demo: a Scipion project '{name}' already exists "
                     f"({manager.getProjectPath(name)}). Give another --project name, or "
                     "--replace to delete it and start again.")
        log(f"deleting the existing project {name} (--replace)")
        manager.deleteProject(name)
    project = manager.createProject(name)
    os.chdir(project.path)  # project paths are relative to the cwd
    return project


def simulate(project, args):
    from pwem.protocols import ProtImportPdb
    from redprior import constants as C
    from redprior.core.io.shipped import DEMO_MODEL
    from redprior.protocols import ProtRedPriorSimulate

    imp = _new(project, ProtImportPdb, "import model",
               inputPdbData=ProtImportPdb.IMPORT_FROM_FILES, pdbFile=DEMO_MODEL,
               skipChimera=True)
    _wait(project, imp)
    log(f"imported {os.path.basename(DEMO_MODEL)}")
    sim = _new(project, ProtRedPriorSimulate, "simulate particles",
               inputAtomStruct=imp.outputPdb, boxSize=args.box, pixelSize=args.pixel,
               numberOfParticles=args.particles, noiseMode=C.NOISE_BY_SNR, snr=args.snr,
               doCtf=args.ctf, defocusMin=5000.0, defocusMax=20000.0, seed=args.seed)
    _wait(project, sim)
    info = sim.getResults()
    log(f"simulated {args.particles} particles, box {args.box}, {args.pixel} A/px, "
        f"SNR {info.get('snr_measured', float('nan')):.4f}")
    return sim, info


def refine(project, sim, label, mode, args):
    from redprior.protocols import ProtRedPriorRefine
    from redprior.protocols.protocol_refine import PRIOR_MODES

    log(f"refining with the {label} (relion_refine_mpi, {args.mpi} MPI ranks)...")
    prot = _new(project, ProtRedPriorRefine, label, inputParticles=sim.outputParticles,
                referenceVolume=sim.outputInitialModel, priorMode=PRIOR_MODES.index(mode),
                numberOfMpi=args.mpi, denoiserFile=args.denoiser)
    t0 = time.time()
    _wait(project, prot, progress=prot.getExreconLog)
    s = prot.getResults()
    log(f"{label}: RELION's final resolution {s['final_resolution']:.2f} A (unmasked) after "
        f"{s['iterations']} iterations, {time.time() - t0:.0f} s")
    return prot


def validate(project, sim, label, prot):
    from redprior.protocols import ProtRedPriorValidate
    val = _new(project, ProtRedPriorValidate, f"validate {label}",
               inputVolume=prot.outputVolume, groundTruth=sim.outputVolume,
               trueParticles=sim.outputParticles, refinedParticles=prot.outputParticles)
    _wait(project, val)
    log(f"validated {label}: report {val.getReportPath()}")
    return val


def compare(project, refinements):
    from redprior.protocols import ProtRedPriorConsensus
    cons = _new(project, ProtRedPriorConsensus, "compare engines")
    for _, prot in refinements:
        cons.inputVolumes.append(prot.outputVolume)
        cons.inputParticles.append(prot.outputParticles)
    _wait(project, cons)
    log(f"consensus of the engines: report {cons.getReportPath()}")
    return cons


def report(out, sim, info, refinements, validations, cons, args):
    from redprior import demo_report
    from redprior.core.io.mrc import read_map

    os.makedirs(out, exist_ok=True)
    entries = [demo_report.refinement_entry(label, prot, val)
               for (label, prot), val in zip(refinements, validations)]
    maps = [("ground truth", read_map(sim.outputVolume.getFileName())[0])]
    maps += [(label, read_map(prot.outputVolume.getFileName())[0]) for label, prot in refinements]
    dataset = {"box": args.box, "pixel_size": args.pixel, "particles": args.particles,
               "snr": info.get("snr_measured"), "snr_requested": args.snr,
               "ctf": bool(args.ctf), "model": info.get("model", {}),
               "model_file": os.path.basename(info.get("source_file") or ""), "seed": args.seed}
    return demo_report.write_report(out, dataset, entries, maps,
                                    demo_report.consensus_entry(cons), os.getcwd())


if __name__ == "__main__":
    sys.exit(main())
