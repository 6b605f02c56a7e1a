"""Lambda schedules for regularisation by denoising (Kimanius et al. 2021, eq. 17 and sec. 4.3)."""
import numpy as np

GAUSSIAN, RED, CWRED = "gaussian", "red", "cwred"
MODES = (GAUSSIAN, RED, CWRED)


def resolution_from_fsc(fsc, ori_size, pixel_size, threshold=0.143):
    """Nominal resolution (A) from RELION's gold-standard FSC column.

    The resolution is that of the last shell before the FSC first drops below `threshold`
    (shell 0 ignored). If it never drops, the resolution is Nyquist. If the FSC is below the
    threshold from shell 1 on, the resolution is 'infinite' (no confidence at all).
    Note: externprior's `get_confidence_from_fsc` inverts this check and always returns
    Nyquist, so its confidence weight is always 1; we do not repeat that.
    """
    fsc = np.asarray(fsc, dtype=float)
    below = np.nonzero(fsc[1:] < threshold)[0]
    if len(below) == 0:
        shell = len(fsc) - 1
    else:
        shell = below[0]  # index in fsc[1:] of the first bad shell = last good shell (1-based)
    if shell <= 0:
        return float("inf")
    return ori_size * pixel_size / float(shell)


def cwred_lambda(resolution, low=10.0, high=4.5):
    """CW-RED confidence: 0 worse than `low` A, 1 better than `high` A, linear in A between."""
    if not np.isfinite(resolution) or resolution >= low:
        return 0.0
    if resolution <= high:
        return 1.0
    return float((low - resolution) / (low - high))


def schedule_lambda(mode, resolution, red_lambda=1.0, low=10.0, high=4.5):
    """The scalar lambda applied in update (17) for one call."""
    if mode == GAUSSIAN:
        return 0.0
    if mode == RED:
        return float(red_lambda)
    if mode == CWRED:
        return red_lambda * cwred_lambda(resolution, low, high)
    raise ValueError(f"Unknown prior mode '{mode}'; use one of {', '.join(MODES)}.")
