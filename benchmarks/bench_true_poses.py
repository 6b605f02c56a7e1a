"""Control for the quality benchmark's over-estimation figures: half-maps from the TRUE poses.

For data sets of benchmarks/bench_quality.py, the particles (odd / even, as two independent
halves) are reconstructed by relion_reconstruct with the poses they were simulated with, without
any prior, and evaluated by the same core.validation.metrics.quality_metrics as every
refinement. No alignment, no reference: the two halves share nothing but the truth, so whatever
these figures call over-estimation (shells the masked half-map FSC at 0.143 claims beyond the
FSC to the truth at 0.5, the FSC to the truth at that claim, the FSC excess) is the measurement's
own wobble at this box and particle count, the floor under the refinements' figures.

    venv/bin/python benchmarks/bench_true_poses.py 3ENL_snr0.06_ctf0_seed2 7OK9_snr0.1_ctf0_seed1 \
        2XHE_snr0.06_ctf0_seed1 --particles 150,300,400,600,all

The data set folders (benchmarks/results/quality_runs/<name>/data) are made again from their
seeds by bench_quality.py when missing. Writes benchmarks/results/true_poses.md.
"""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_quality as bq  # noqa: E402  (the data sets, the metrics and RELION's environment)


def split_star(star, out_dir, n=None):
    """Two STAR files with the odd and the even particles of the first n of `star` (all by
    default; same optics block)."""
    with open(star) as fh:
        text = fh.read()
    head, body = text.split("data_particles", 1)
    lines = body.split("\n")
    rows_start = max(i for i, s in enumerate(lines) if s.startswith("_rln")) + 1
    header, rows = lines[:rows_start], [s for s in lines[rows_start:] if s.strip()][:n]
    paths = []
    for half in (0, 1):
        path = os.path.join(out_dir, f"half{half + 1}.star")
        with open(path, "w") as fh:
            fh.write(head + "data_particles" + "\n".join(header) + "\n"
                     + "\n".join(rows[half::2]) + "\n")
        paths.append(path)
    return paths


def reconstruct(star, out, ctf, cwd):
    cmd = ["relion_reconstruct", "--i", star, "--o", out, "--angpix", str(bq.PIX)]
    if ctf:
        cmd.append("--ctf")
    subprocess.run(cmd, check=True, cwd=cwd, env=bq.ENV, stdout=subprocess.DEVNULL)
    return bq.read_map(out)[0]


def evaluate(name, n=None):
    with open(os.path.join(bq.RUNS, name, "data", "dataset.json")) as fh:
        ds = json.load(fh)
    folder = os.path.join(bq.RUNS, name)
    data = bq.make_dataset(folder, ds["structure"], ds["snr"], ds["ctf"], ds["seed"],
                           ds["particles"])
    true = bq.particles_star.read_particles(os.path.join(data, "particles.star"))
    R = bq.euler_to_matrix(true["rot"], true["tilt"], true["psi"])
    with tempfile.TemporaryDirectory() as tmp:
        s1, s2 = split_star(os.path.join(data, "particles.star"), tmp, n)
        h1 = reconstruct(s1, os.path.join(tmp, "half1.mrc"), ds["ctf"], data)
        h2 = reconstruct(s2, os.path.join(tmp, "half2.mrc"), ds["ctf"], data)
    gt, _ = bq.read_map(os.path.join(data, "ground_truth.mrc"))
    m = bq.validation.quality_metrics(h1, h2, gt, bq.PIX, R, R)
    m.update(name=name, particles=n or ds["particles"])
    return m


def main(argv):
    import argparse
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="+", help="data sets of bench_quality.py")
    p.add_argument("--particles", default="all",
                   help="comma-separated particle counts (the first N of each data set) so "
                        "that the halves end near the refinements' resolution; default: all")
    a = p.parse_args(argv)
    counts = [None if c == "all" else int(c) for c in a.particles.split(",")]
    rows = [evaluate(name, n) for name in a.names for n in counts]
    lines = ["| data set | particles | FSC truth 0.5 (A) | mean FSC truth | masked half-map (A) "
             "| overest. (shells) | FSC truth at the claim | FSC excess mean / max |",
             "|---|---|---|---|---|---|---|---|"]
    for m in rows:
        lines.append(f"| {m['name']} (true poses) | {m['particles']} | "
                     f"{bq._fmt(m['gt_res_05'], m['gt_res_05_crossed'])} | "
                     f"{m['gt_fsc_mean']:.3f} | "
                     f"{bq._fmt(m['half_res_masked'], m['half_res_masked_crossed'])} | "
                     f"{m['overestimation_shells']} | {bq._fmt(m['gt_fsc_at_claim'])} | "
                     f"{m['fsc_excess_mean']:+.3f} / {m['fsc_excess_max']:+.3f} |")
    lines += ["", "Half-maps reconstructed by relion_reconstruct from the simulated (true) "
              "poses, odd / even particles, no prior; figures as in quality.md "
              "(core.validation.metrics.quality_metrics). Curves of the FSC to the truth, "
              "shells 8-32 (16 to 4 A):", ""]
    for m in rows:
        curve = " ".join(f"{v:.2f}" for v in m["fsc_to_truth"][8:33])
        lines.append(f"* {m['name']}, {m['particles']}: {curve}")
    text = "\n".join(lines)
    with open(os.path.join(bq.RESULTS, "true_poses.md"), "w") as fh:
        fh.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
