"""Benchmark of the denoiser library on this machine's CPU.

Prints, for the plugin's default U-Net ('cpu' preset) and the paper's ('paper'):
  1. training steps per hour at 64^3, batch 2, and on batches of 8 random 32^3 crops (what
     scripts/train_default_denoiser.py runs; a few timed steps after one warm-up step);
  2. inference seconds per map at 64^3 and 96^3 (standardise -> network -> undo);
and the cost in seconds per training pair of each pair mode at 64^3, 2 A/px (the demo's
grid, ground truth from the shipped atomic model):
  gaussian (shaped noise + solvent damping), record (reading an exrecon --record map + FSC
  and filtering; the RELION refinement that produced it is not counted), perturbed_pose
  (simulation of --particles particles + two direct-Fourier half reconstructions).

    venv/bin/python benchmarks/bench_denoiser.py [--steps 3] [--particles 1000]
                                                 [--presets cpu,paper]
Takes a few minutes on 2 cores; nothing is trained for real.
"""
import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("REDPRIOR_CORE_ONLY", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402

from redprior.core.io.shipped import DEMO_MODEL  # noqa: E402
from redprior.core.simulation import structure  # noqa: E402
from redprior.core.training_data import gaussian, perturbed, recorded  # noqa: E402
from redprior.core.geometry.masks import solvent_mask  # noqa: E402
from redprior.core.io.mrc import write_map  # noqa: E402

BOX, PIX = 64, 2.0


def bench_training(preset, steps, size=BOX, batch=2):
    import keras
    import tensorflow as tf

    from redprior.core.denoiser.unet import build_preset

    model = build_preset(preset)
    opt = keras.optimizers.Adam(1e-4)
    opt.build(model.trainable_variables)
    variables = model.trainable_variables

    @tf.function
    def step(x, t):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True) - t)) + tf.add_n(model.losses)
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    rng = np.random.default_rng(0)
    shape = (batch, size, size, size, 1)
    x = tf.constant(rng.standard_normal(shape).astype(np.float32))
    t = tf.constant(rng.standard_normal(shape).astype(np.float32))
    step(x, t)  # trace + first step
    t0 = time.time()
    for _ in range(steps):
        float(step(x, t))
    per_step = (time.time() - t0) / steps
    return model, per_step


def bench_inference(model, n, repeats=2):
    from redprior.core.denoiser.single_pass import keras_denoise_fn

    f = keras_denoise_fn(model)
    vol = np.random.default_rng(1).standard_normal((n, n, n)).astype(np.float32)
    f(vol)  # first call builds the graph for this shape
    t0 = time.time()
    for _ in range(repeats):
        f(vol)
    return (time.time() - t0) / repeats


def bench_pairs(particles):
    gt = structure.potential_map(DEMO_MODEL, BOX, PIX)
    rng = np.random.default_rng(0)
    mask = solvent_mask(gt, PIX)
    out = {}
    costs = []
    for d in (4.0, 8.0, 15.0):
        prof = gaussian.noise_profile_for_resolution(gt, PIX, d)
        p = gaussian.gaussian_noise_pair(gt, prof, mask, rng, PIX, extra_shells=10)
        costs.append(p.seconds)
    out["gaussian"] = (float(np.mean(costs)), f"mean of 3 pairs, nominal {p.resolution:.1f} A last")
    with tempfile.TemporaryDirectory() as tmp:
        prof = gaussian.noise_profile_for_resolution(gt, PIX, 6.0)
        g = gaussian.gaussian_noise_pair(gt, prof, mask, rng, PIX)
        m, j = os.path.join(tmp, "it005_half1_unreg.mrc"), os.path.join(tmp, "it005_half1_fsc.json")
        write_map(m, 50.0 * g.x, PIX)
        with open(j, "w") as fh:
            json.dump({"fsc": g.fsc.tolist(), "resolution": g.resolution, "pixel_size": PIX}, fh)
        p = recorded.pair_from_record(m, j, gt)
        out["record"] = (p.seconds, "read + filter + scale fit; the refinement itself not counted")
    p = perturbed.perturbed_pose_pair(gt, PIX, particles, snr=0.05, angle_error_deg=3.0,
                                      shift_error_A=1.0, rng=rng)
    out["perturbed_pose"] = (p.seconds, f"{particles} particles, SNR 0.05, 3 deg / 1 A errors: "
                                        f"nominal {p.resolution:.1f} A (gives 2 half maps)")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3, help="timed training steps per preset")
    ap.add_argument("--particles", type=int, default=1000)
    ap.add_argument("--presets", default="cpu,paper")
    args = ap.parse_args(argv)

    print(f"cpu cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")
    print(f"== training pairs at {BOX}^3, {PIX:g} A/px (seconds per pair)")
    for mode, (sec, note) in bench_pairs(args.particles).items():
        print(f"  {mode:15s} {sec:8.3f} s   ({note})")
    for preset in filter(None, args.presets.split(",")):  # --presets '': pair costs only
        model, per_step = bench_training(preset, args.steps)
        print(f"== U-Net preset '{preset}': {model.count_params()} parameters")
        print(f"  training at {BOX}^3, batch 2: {per_step:.2f} s/step = "
              f"{3600.0 / per_step:.0f} steps/hour ({args.steps} steps timed)")
        # what scripts/train_default_denoiser.py runs: batches of 8 random 32^3 crops
        _, crop_step = bench_training(preset, args.steps, size=32, batch=8)
        print(f"  training on 32^3 crops, batch 8: {crop_step:.2f} s/step = "
              f"{3600.0 / crop_step:.0f} steps/hour")
        for n in (64, 96):
            print(f"  inference {n}^3: {bench_inference(model, n):.2f} s/map")


if __name__ == "__main__":
    main()
