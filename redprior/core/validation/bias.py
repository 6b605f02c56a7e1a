"""Prior-bias test: does a prior put structure into a map that the data do not hold?

Control data sets are made from the real particles (same count, optics, CTF and metadata):
  * pure noise: every image replaced by white Gaussian noise of that image's mean and
    standard deviation (at cryo-EM SNRs almost all of an image's variance is noise);
  * phase-randomised: every image keeps its Fourier amplitudes but gets random phases
    beyond a chosen resolution, so no coherent signal is left there.
Each control is refined from the same initial model with the prior under test and with
RELION's Gaussian prior. Beyond the control's cutoff (the initial model's low-pass for pure
noise, the randomisation resolution for phase-randomised particles) the result can correlate
with the real structure only if something other than the data put it there. That correlation
is measured by the FSC of the result against a reference map of the real structure (the
ground truth when known, else the real refinement's map), averaged over the shells from the
cutoff to Nyquist. It is flagged when that mean exceeds INVENTED_FSC.
"""
import os

import mrcfile
import numpy as np
from emtable import Table

from redprior.core.fourier.fsc import fsc, frequencies
from redprior.core.fourier.grid import shell_index

INVENTED_FSC = 0.143   # a mean FSC beyond the cutoff above this is structure from nowhere
CONTROLS = ("noise", "phases")


# ---- control particles ---------------------------------------------------------------------
def noise_like(images, rng):
    """White Gaussian noise with each image's mean and standard deviation."""
    images = np.asarray(images, dtype=np.float64)
    mean = images.mean(axis=(1, 2), keepdims=True)
    std = images.std(axis=(1, 2), keepdims=True)
    return (mean + std * rng.standard_normal(images.shape)).astype(np.float32)


def phase_randomised(images, pixel_size, beyond_A, rng):
    """Images with random Fourier phases at resolutions finer than beyond_A (amplitudes kept)."""
    images = np.asarray(images, dtype=np.float64)
    n = images.shape[-1]
    beyond = shell_index(n, 2) >= n * pixel_size / float(beyond_A)
    ft = np.fft.rfft2(images)
    # the phases of real white noise keep Friedel symmetry, so the result stays real
    noise = np.fft.rfft2(rng.standard_normal(images.shape))
    phase = noise / np.maximum(np.abs(noise), 1e-30)
    ft = np.where(beyond[None], np.abs(ft) * phase, ft)
    return np.fft.irfft2(ft, s=images.shape[-2:]).astype(np.float32)


def read_images(star):
    """(n, box, box) float32 images of a particle STAR, in its order.

    Image paths are taken as RELION would: relative to the working folder, else (as our
    simulations write them) relative to the STAR's folder."""
    rows = Table(fileName=star, tableName="particles")
    folder = os.path.dirname(os.path.abspath(star))
    stacks, out = {}, []
    for name in rows.getColumnValues("rlnImageName"):
        index, path = name.split("@")
        if not os.path.isabs(path) and not os.path.exists(path):
            path = os.path.join(folder, path)
        if path not in stacks:
            stacks[path] = mrcfile.mmap(path, mode="r", permissive=True)
        data = stacks[path].data
        out.append(np.asarray(data[int(index) - 1] if data.ndim == 3 else data))
    for mrc in stacks.values():
        mrc.close()
    return np.stack(out).astype(np.float32)


def write_control(star, images, out_star, pixel_size, relative_to=None):
    """A copy of `star` whose images are `images`, in one new stack next to out_star; image
    names relative to `relative_to` (RELION's working folder; default: out_star's folder)."""
    stack = os.path.splitext(os.path.abspath(out_star))[0] + ".mrcs"
    stack_name = os.path.relpath(stack, relative_to or os.path.dirname(stack))
    with mrcfile.new(stack, overwrite=True) as mrc:
        mrc.set_data(np.asarray(images, dtype=np.float32))
        mrc.set_image_stack()
        mrc.voxel_size = float(pixel_size)
    optics = Table(fileName=star, tableName="optics")
    parts = Table(fileName=star, tableName="particles")
    new = Table(columns=parts.getColumnNames())
    for i, row in enumerate(parts):
        values = row._asdict()
        values["rlnImageName"] = f"{i + 1:06d}@{stack_name}"
        new.addRow(*[values[c] for c in parts.getColumnNames()])
    with open(out_star, "w") as fh:
        fh.write("\n# version 30001\n")
        optics.writeStar(fh, tableName="optics")
        fh.write("\n# version 30001\n")
        new.writeStar(fh, tableName="particles")
    return out_star


# ---- the measurement -----------------------------------------------------------------------
def invented_structure(result, reference, pixel_size, cutoff_A, mask=None):
    """How much of the reference's structure a control result holds beyond cutoff_A.

    Returns dict(cutoff_A, cutoff_shell, mean_fsc, max_fsc, invented, frequencies, fsc).
    """
    result = np.asarray(result, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if mask is not None:
        result, reference = result * mask, reference * mask
    box = result.shape[0]
    curve = fsc(result, reference)
    shell = int(np.ceil(box * pixel_size / float(cutoff_A)))
    beyond = curve[shell:box // 2 + 1]
    mean = float(np.mean(beyond)) if beyond.size else 0.0
    return dict(cutoff_A=float(cutoff_A), cutoff_shell=shell, mean_fsc=mean,
                max_fsc=float(np.max(beyond)) if beyond.size else 0.0,
                invented=bool(mean > INVENTED_FSC),
                frequencies=frequencies(box, pixel_size), fsc=curve)


def verdict(results):
    """One sentence per control and prior, and the overall verdict for the prior under test.

    results: {(control, prior_label): invented_structure(...)}; the prior under test is
    every label that is not 'Gaussian'.
    """
    lines, bad = [], []
    for (control, prior), r in sorted(results.items()):
        what = ('pure noise' if control == 'noise'
                else 'phases randomised beyond %.1f Å' % r['cutoff_A'])
        state = ('STRUCTURE APPEARED' if r['invented'] else 'no structure')
        lines.append('%s, %s prior: %s beyond %.1f Å (mean FSC to the reference %.3f, max '
                     '%.3f; flagged above %.3f)' % (what, prior, state, r['cutoff_A'],
                                                    r['mean_fsc'], r['max_fsc'], INVENTED_FSC))
        if r['invented'] and prior != 'Gaussian':
            bad.append(what)
    overall = ('FAIL: the prior put structure that is not in the data into the map (%s).'
               % ', '.join(bad) if bad else
               'PASS: the prior added no structure beyond what the data hold.')
    return overall, lines
