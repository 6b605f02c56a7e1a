"""Measure the shipped denoiser on what the hook feeds it (issue 12): its single-pass curve
and per-shell table on RELION-intermediate maps x~ of its own held-out structures, not on
Gaussian-noise maps.

    venv/bin/python scripts/measure_default_denoiser.py [--structures 4] [--sets ...] [--write]

1. a sub-manifest of the shipped model's validation structures (its training_history.json,
   structures_val: whole chains it was never trained on);
2. 'training maps' in RELION-intermediates mode on them, in a real Scipion project, one run
   per simulated set (--sets): one auto-refine per structure through the hook in gaussian
   --record mode, the recorded x~ paired with the FSC-filtered ground truth (the same pairs
   as the training script's stage 2);
3. one pass of the shipped model on every pair (core.denoiser.single_pass.evaluate): the L1 /
   L2 curve, the thresholds the rule reads from it, the per-shell table. Printed; with
   --write they replace the Gaussian-noise figures in the shipped metadata (which keeps the
   old curve as 'single_pass_gaussian'), the figures and a section of TRAINING_REPORT.md.

The shipped CW-RED ramp stays the one the quality benchmark measured (train_default_denoiser
.BENCHMARK_RAMP) unless --thresholds curve is given: a ramp ships when a refinement says it
is better, not when a single pass does. The weights are not touched.
The Scipion project (redprior_measure_denoiser) is kept: a second run reuses the pairs.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import train_default_denoiser as TD  # noqa: E402  (sets Scipion's environment too)

TD.LOG_NAME = "measure default denoiser"

REPORT_HEADING = "## Single pass on RELION-intermediate maps of the held-out structures"


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--structures", type=int, default=4,
                   help="how many of the model's held-out structures (one family after another)")
    p.add_argument("--sets", default="0.15:800,0.1:400", metavar="SNR:PARTICLES,...",
                   help="one simulated set and auto-refine per entry and structure; the hook "
                        "saw 7-10 A with 800 particles at 0.15 and needs fewer or noisier "
                        "ones for 10-20 A (at 0.04 with 800 particles an LDH stayed at 21 A "
                        "for 15 iterations, 18 min)")
    p.add_argument("--pairs", type=int, default=30, help="recorded pairs kept per structure")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--project", default="redprior_measure_denoiser")
    p.add_argument("--out", default=TD.DEFAULT_OUT, help="the shipped model's folder")
    p.add_argument("--thresholds", choices=("benchmark", "curve"), default="benchmark",
                   help="the CW-RED ramp written with --write")
    p.add_argument("--write", action="store_true",
                   help="write the figures into the shipped metadata, figures and report")
    return p


def held_out_manifest(history_path, count, out_json):
    """A manifest of `count` of the model's validation chains (all with count 0)."""
    from redprior.core.structure_set.manifest import (MANIFEST, load_manifest,
                                                      write_manifest)
    from redprior.core.training_data.ground_truth import structure_id, structure_name

    with open(history_path) as fh:
        wanted = [structure_name(s) for s in json.load(fh)["structures_val"]]
    full = load_manifest(MANIFEST)
    by_name = {structure_name(structure_id(0, c["id"])): c for c in full["chains"]}
    missing = [w for w in wanted if w not in by_name]
    if missing:
        sys.exit(f"held-out structures not in {MANIFEST}: {missing}")
    if count and count < len(wanted):
        # one of each family (source and folder: the LDHs, the trypsins...) in turn, so
        # that a few structures are as varied as the held-out list allows
        families = {}
        for w in wanted:
            c = by_name[w]
            families.setdefault((c["source"], os.path.dirname(c["file"])), []).append(w)
        rounds = [f[i] for i in range(len(wanted)) for f in families.values() if i < len(f)]
        wanted = rounds[:count]
    write_manifest(dict(full, chains=[by_name[w] for w in wanted]), out_json)
    return wanted


def parse_sets(text):
    """[(snr, particles)] of '--sets 0.15:800,0.1:400'."""
    try:
        return [(float(a), int(b)) for a, b in (e.split(":") for e in text.split(",") if e)]
    except ValueError:
        sys.exit(f"--sets {text!r}: give SNR:PARTICLES pairs, e.g. 0.15:800,0.1:400")


def recorded_pairs_run(project, args, manifest, snr, particles):
    """The finished 'training maps' run of RELION intermediates of one simulated set per
    structure (made, or reused when one with these settings exists)."""
    from redprior.protocols import ProtRedPriorTrainingMaps
    from redprior.protocols.training_maps_form import MODE_RELION, SRC_SHIPPED

    settings = dict(trainingMode=MODE_RELION, inputSource=SRC_SHIPPED, manifest=manifest,
                    maxStructures=0, boxSize=64, pixelSize=2.0, pairsPerStructure=args.pairs,
                    resolutionBest=3.0, resolutionWorst=25.0, seed=args.seed,
                    relionSnrs="%g" % snr, relionParticles=particles)
    maps = TD._finished(project, ProtRedPriorTrainingMaps, settings)
    if maps is None:
        maps = project.newProtocol(ProtRedPriorTrainingMaps, numberOfMpi=3, **settings)
        TD.log(f"training maps: RELION intermediates of the held-out structures, SNR "
               f"{snr:g}, {particles} particles (progress: {maps.getLogPaths()[0]})")
        TD._run(project, maps)
    else:
        TD.log(f"reusing finished 'training maps' run {maps.getObjId()}")
    return maps


def all_pairs(stores):
    """Every pair of every store, as single_pass.evaluate reads them."""
    for store in stores:
        for i in range(len(store)):
            yield store.load(i)


def table_lines(result, source):
    """Markdown lines: the curve per resolution bin and the thresholds read from it."""
    lines = [f"L2 / L1 ratio ||f(x~) - gt|| / ||x~ - gt|| per bin of nominal resolution "
             f"(gt: the FSC-filtered target; < 1: the denoiser helps), on {source}.", "",
             "| bin (A) | maps | L2 ratio | L1 ratio |", "|---|---|---|---|"]
    edges = result["bins"]
    for i, n in enumerate(result["count"]):
        if n:
            lines.append(f"| {edges[i]:g}-{edges[i + 1]:g} | {n} | "
                         f"{result['ratio_l2'][i]:.3f} | {result['ratio_l1'][i]:.3f} |")
    if result["cw_low"] is not None:
        ramp = (f"lambda 0 worse than {result['cw_low']:.2f} A, 1 better than "
                f"{result['cw_high']:.2f} A")
    else:
        ramp = f"none ({result['threshold_reason']})"
    return lines + ["", f"Thresholds the rule reads from this curve: {ramp}."]


def write_shipped(args, result, source, lines):
    """The measurement into the shipped metadata, its figures and TRAINING_REPORT.md."""
    from redprior.core.denoiser.model import metadata_path, read_metadata, update_metadata
    from redprior.core.denoiser.single_pass import metadata_fields
    from redprior.viewers.viewer_training import _save, plotShellLambda, plotSinglePass

    model = os.path.join(args.out, "redprior_default_denoiser.keras")
    meta = read_metadata(model)  # names the file and the fix when it is missing
    if "single_pass_gaussian" not in meta:
        meta["single_pass_gaussian"] = dict(meta["single_pass"], measured_on=(
            "Gaussian-noise maps of the held-out structures (the training script)"))
    fields = metadata_fields(result)
    fields["single_pass"]["measured_on"] = source
    meta.update(single_pass=fields["single_pass"], per_shell_lambda=fields["per_shell_lambda"],
                threshold_rule=fields["threshold_rule"],
                curve_thresholds=dict(cw_low=result["cw_low"], cw_high=result["cw_high"],
                                      reason=result["threshold_reason"]))
    if args.thresholds == "curve" and result["cw_low"] is not None:
        meta.update(cw_low=result["cw_low"], cw_high=result["cw_high"],
                    threshold_reason=f"read from the single-pass curve on {source}")
    else:
        low, high = TD.BENCHMARK_RAMP
        read = (f"{result['cw_low']:.1f} / {result['cw_high']:.1f} A: "
                f"{result['threshold_reason']}" if result["cw_low"] is not None
                else f"none: {result['threshold_reason']}")
        meta.update(cw_low=low, cw_high=high, threshold_reason=(
            f"{TD.BENCHMARK_RAMP_REASON}; the single-pass curve on {source} places {read}"))
    update_metadata(model, **meta)  # strict JSON: NaN (empty bins) as null
    meta = read_metadata(model)  # as every reader sees it
    _save([("single_pass", plotSinglePass(meta, "single pass on RELION intermediates")),
           ("per_shell_lambda", plotShellLambda(meta))], args.out)
    report = os.path.join(args.out, "TRAINING_REPORT.md")
    with open(report) as fh:
        text = fh.read().split(REPORT_HEADING)[0].rstrip()
    section = [REPORT_HEADING, "", "Measured by `venv/bin/python scripts/"
               "measure_default_denoiser.py " + " ".join(sys.argv[1:]) + "`; the figures "
               "`single_pass.png` and `per_shell_lambda.png` and the metadata's "
               "`single_pass` and `per_shell_lambda` are this measurement (the Gaussian-noise "
               "curve above is kept as `single_pass_gaussian`).", ""] + lines + [
               "", f"Shipped CW-RED ramp: {meta['cw_low']:g} / {meta['cw_high']:g} A "
               f"({meta['threshold_reason']})."]
    with open(report, "w") as fh:
        fh.write(text + "\n\n" + "\n".join(section) + "\n")
    TD.log(f"wrote {metadata_path(model)}, the figures and {report}")


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.out = os.path.abspath(args.out)
    sets = parse_sets(args.sets)  # a bad --sets fails before any project is made
    TD.redprior_env.setup_environment(os.environ.get("REDPRIOR_SCIPION_ROOT")
                                      or os.path.join(os.getcwd(), ".redprior_scipion"))
    from pyworkflow.project import Manager

    from redprior.core.denoiser.model import Denoiser
    from redprior.core.denoiser.single_pass import denoiser_fn, evaluate

    manager = Manager()
    project = (manager.loadProject(args.project) if manager.hasProject(args.project)
               else manager.createProject(args.project))
    os.chdir(project.path)  # Scipion runs a project's protocols from its folder
    # one file per selection: the 'training maps' run is reused by its settings (the path)
    manifest = os.path.abspath(f"held_out_manifest_{args.structures}.json")
    names = held_out_manifest(os.path.join(args.out, "training_history.json"),
                              args.structures, manifest)
    TD.log(f"held-out structures: {', '.join(names)}")
    stores = [recorded_pairs_run(project, args, manifest, snr, n).outputPairs.getStore()
              for snr, n in sets]
    pixel = stores[0].pixel_size
    result = evaluate(denoiser_fn(Denoiser(os.path.join(
        args.out, "redprior_default_denoiser.keras")), pixel), all_pairs(stores),
        pixel_size=pixel)
    source = (f"{sum(len(s) for s in stores)} RELION-intermediate maps of {len(names)} "
              f"held-out structures (auto-refines of " + ", ".join(
                  f"{n} particles at SNR {snr:g}" for snr, n in sets) + ")")
    lines = table_lines(result, source)
    print("\n".join(lines), flush=True)
    if args.write:
        write_shipped(args, result, source, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
