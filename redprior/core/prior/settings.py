"""The prior's settings and their one validation, shared by the refine protocol's form and
the hook program, so the two cannot disagree (what the protocol refuses, the hook refuses).
"""
import math
from dataclasses import dataclass

from . import schedule

from redprior.core.denoiser.model import MAX_RESAMPLE as MAX_PIXEL_RATIO


@dataclass
class PriorSettings:
    mode: str
    pixel_size: float
    red_lambda: float = 1.0
    cw_low: float = schedule.CW_LOW_DEFAULT
    cw_high: float = schedule.CW_HIGH_DEFAULT
    model: str = None  # the denoiser (.keras with its .json); None in Gaussian mode


def _finite(x):
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def prior_problems(s):
    """Messages (problem and fix) for everything wrong with the settings; [] if none."""
    if s.mode not in schedule.MODES:
        return [f"Unknown prior mode '{s.mode}': use one of {', '.join(schedule.MODES)}."]
    errors = []
    if not (_finite(s.pixel_size) and s.pixel_size > 0):
        errors.append(f"The pixel size is {s.pixel_size!r} A/px: set the particles' sampling "
                      "rate (or --angpix) to a positive number.")
    if s.mode == schedule.GAUSSIAN:
        return errors
    if not (_finite(s.red_lambda) and s.red_lambda >= 0):
        errors.append(f"Lambda must be a number >= 0 (0: RELION's prior, 1: full RED), got "
                      f"{s.red_lambda!r}.")
    if s.mode in (schedule.CWRED, schedule.CWRED_SHELL):
        if not (_finite(s.cw_low) and _finite(s.cw_high) and 0 < s.cw_high < s.cw_low):
            errors.append(f'CW-RED: "λ 1 below" ({s.cw_high!r} Å) must be a positive '
                          f'number smaller than "λ 0 above" ({s.cw_low!r} Å), e.g. the '
                          f"paper's {schedule.CW_HIGH_DEFAULT:g} / {schedule.CW_LOW_DEFAULT:g} Å.")
    errors += _model_problems(s)
    return errors


def _model_problems(s):
    from redprior.core.denoiser.model import DenoiserError, check_model_file, read_metadata

    try:
        meta = read_metadata(s.model)
        check_model_file(s.model)
    except DenoiserError as exc:
        return [str(exc)]
    errors = []
    if s.mode == schedule.CWRED_SHELL and not schedule.has_shell_table(meta):
        errors.append(f"CW-RED per shell: the denoiser {s.model} has no per-shell lambda table "
                      "in its metadata (train it with validation structures), or choose CW-RED.")
    if _finite(s.pixel_size) and s.pixel_size > 0:
        ratio = s.pixel_size / float(meta["pixel_size"])
        if not 1.0 / MAX_PIXEL_RATIO <= ratio <= MAX_PIXEL_RATIO:
            errors.append(f"The denoiser was trained at {meta['pixel_size']:g} A/px and the maps "
                          f"are at {s.pixel_size:g} A/px (ratio {ratio:.2f}, allowed "
                          f"{1 / MAX_PIXEL_RATIO:g}-{MAX_PIXEL_RATIO:g}): rescale the particles "
                          "(e.g. relion_image_handler --rescale_angpix) or train a denoiser at "
                          "this pixel size.")
    return errors
