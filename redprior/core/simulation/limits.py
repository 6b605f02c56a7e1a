"""What a simulation request may ask for: one check shared by the simulate protocol's form.

Each problem comes back as a message that names it and the fix. Memory is checked against
this machine: the ground truth is built in float64 with a few FFT copies, and the particle
stack is held in memory before it is written.
"""
import math
import os

MIN_BOX = 16
MAX_PARTICLES = 10_000_000
MAX_SNR = 1e4  # beyond this the "noise" is below float32 rounding: not a noisy data set
MEMORY_FRACTION = 0.8


def _number(x):
    try:
        return float(x) if math.isfinite(float(x)) else None
    except (TypeError, ValueError):
        return None


def physical_memory():
    """Bytes of RAM of this machine (None where the system does not say)."""
    try:
        return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    except (ValueError, OSError, AttributeError):
        return None


def memory_needed(box, particles):
    """Bytes a simulation of `particles` images of box^2 from a box^3 map needs at its peak."""
    return 8 * box ** 3 * 6 + 8 * box ** 2 * particles


def simulation_problems(box, pixel, particles, snr=None, scale=None, initial_lowpass=None,
                        memory=None):
    """Messages for a box (px), pixel size (A), particle count and noise level; [] if fine."""
    errors = []
    px = _number(pixel)
    if px is None or px <= 0:
        errors.append(f'The pixel size must be a positive number of A/px (got {pixel}).')
    if box is None or box < MIN_BOX or box % 2:
        errors.append(f'The box must be an even number of at least {MIN_BOX} px (got {box}).')
    if particles is None or particles < 1 or particles > MAX_PARTICLES:
        errors.append(f'The number of particles must be 1 to {MAX_PARTICLES:,} (got '
                      f'{particles}).')
    if snr is not None and not (_number(snr) and 0 < snr <= MAX_SNR):
        errors.append(f'The SNR must be a positive number up to {MAX_SNR:g} (got {snr}).')
    if scale is not None and not (_number(scale) and scale > 0):
        errors.append(f'The intensity scale factor must be a positive number (got {scale}).')
    if px and initial_lowpass is not None:
        lp = _number(initial_lowpass)
        if lp is None or lp < 2 * px:
            errors.append(f'The initial model low-pass ({initial_lowpass} A) must be a number '
                          f'no finer than Nyquist ({2 * px:g} A); use a larger value.')
    if not errors:
        need, have = memory_needed(box, particles), memory or physical_memory()
        if have and need > MEMORY_FRACTION * have:
            errors.append(f'{particles:,} particles of {box} px need about {need / 2**30:.1f} '
                          f'GB of memory; this machine has {have / 2**30:.1f} GB. Use fewer '
                          'particles or a smaller box (a larger pixel size).')
    return errors
