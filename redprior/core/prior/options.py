"""The hook's command line: the options of redprior_exrecon (core.prior.exrecon) and how the
protocols and benchmarks build them, in one place so that the two always agree."""
import argparse
import shlex
import sys

from redprior.core.denoiser.views import HALF_VIEWS, HALF_VIEWS_DEFAULT
from redprior.core.denoiser.worker import REPLY_TIMEOUT

from . import schedule


DIRECT, GRIDDED = "direct", "gridded"
DENOISER_INPUTS = (DIRECT, GRIDDED)


def build_parser():
    p = argparse.ArgumentParser(prog="redprior_exrecon", description=_exrecon_doc(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("star", help="RELION's *_external_reconstruct.star (appended by RELION)")
    p.add_argument("--mode", choices=schedule.MODES, default=schedule.GAUSSIAN,
                   help="gaussian: RELION's own prior (lambda 0); red: fixed lambda; "
                        "cwred: lambda from the half-map resolution; cwred-shell: cwred times "
                        "the model's per-shell table at that resolution (see core.prior.schedule)")
    p.add_argument("--lambda", dest="lam", type=float, default=1.0,
                   help="RED lambda (red mode), or its maximum (cwred mode)")
    p.add_argument("--cw-low", type=float, default=None,
                   help="CW-RED: lambda 0 worse than this (A); default: the model's own ramp "
                        "(its metadata, as the refine form), else the paper's %g"
                   % schedule.CW_LOW_DEFAULT)
    p.add_argument("--cw-high", type=float, default=None,
                   help="CW-RED: lambda 1 better than this (A); default as --cw-low (the "
                        "paper's %g)" % schedule.CW_HIGH_DEFAULT)
    p.add_argument("--fsc-threshold", type=float, default=0.143)
    p.add_argument("--model", help="denoiser .keras file (with its .json metadata)")
    p.add_argument("--angpix", type=float, default=0.0, help="pixel size of the maps (A)")
    p.add_argument("--minres-map", type=int, default=5,
                   help="no prior below this shell (relion_refine uses 5)")
    p.add_argument("--gridding-iterations", type=int, default=10,
                   help="numpy reconstruction only (RELION's program always uses 10)")
    p.add_argument("--reconstruction", choices=("auto", "relion", "numpy"), default="auto",
                   help="who computes x~ and the update: RELION's relion_external_reconstruct "
                        "on our inputs (faster, leaner; core.relion.program) or the numpy "
                        "re-implementation (core.relion.reconstruct); auto: RELION's program "
                        "when it is found, else numpy")
    p.add_argument("--denoiser-input", choices=DENOISER_INPUTS, default=DIRECT,
                   help="how x~ = B/K, the denoiser's input, is computed: direct (one division "
                        "and inverse FFT, as the method's authors and RELION 5's Blush do) or "
                        "gridded (RELION's 10 gridding iterations: a second reconstruction per "
                        "call); the update itself always uses RELION's gridding")
    p.add_argument("--cap-at-resolution", action="store_true",
                   help="apply the prior only up to the current resolution (the shell where "
                        "the half-map FSC crosses --fsc-threshold, with a %d-shell raised-cosine "
                        "edge); beyond it RELION's own prior (see core.prior.schedule."
                        "resolution_cap)" % schedule.CAP_EDGE_SHELLS)
    p.add_argument("--prior-up-to", type=float, default=0.0, metavar="A",
                   help="apply the prior only up to this fixed resolution (A), with the edge "
                        "of --cap-at-resolution; beyond it RELION's own prior (core.prior."
                        "schedule.fixed_cap); 0 (default): on every shell")
    p.add_argument("--lowpass-reference", action="store_true",
                   help="low-pass each half's map, data and prior alike, at the current "
                        "resolution (RELION 5 Blush's 'spectral trailing'; the edge of "
                        "--cap-at-resolution): the reference then holds nothing beyond what "
                        "both halves support; never the final joined map")
    p.add_argument("--half-views", choices=HALF_VIEWS, default=HALF_VIEWS_DEFAULT,
                   help="rotated: half 2 is denoised turned by a quarter turn about z and "
                        "turned back, so the network's orientation-dependent additions differ "
                        "between the halves (see core.denoiser.views); default %(default)s")
    p.add_argument("--log", help="append one line per call to this file")
    p.add_argument("--worker", help="socket of a running denoiser worker (redprior_worker); "
                                    "without one the model is loaded in this process")
    p.add_argument("--worker-timeout", type=float, default=REPLY_TIMEOUT,
                   help="seconds to wait for the worker's answer before loading the model "
                        "in this process (default %(default)g)")
    p.add_argument("--record", help="also save x~ = B/K (real space) and the FSC here")
    p.add_argument("--keep", action="store_true", help="keep RELION's B/K files")
    p.add_argument("--o", dest="output", help="write the map here instead of rlnExtReconsResult")
    return p


def hook_args(mode, pixel_size, log, model=None, red_lambda=1.0,
              cw_low=schedule.CW_LOW_DEFAULT, cw_high=schedule.CW_HIGH_DEFAULT,
              worker=None, keep=False, record=None, cap_at_resolution=schedule.CAP_DEFAULT,
              denoiser_input=DIRECT, half_views=HALF_VIEWS_DEFAULT, prior_up_to=0.0,
              lowpass_reference=False):
    """Options of redprior_exrecon (RELION appends the STAR file itself)."""
    args = ["--mode", mode, "--angpix", "%g" % pixel_size, "--log", log]
    if mode != schedule.GAUSSIAN:
        args += ["--model", model, "--lambda", "%g" % red_lambda]
        if cap_at_resolution:
            args.append("--cap-at-resolution")
        if prior_up_to:
            args += ["--prior-up-to", "%g" % prior_up_to]
        args += ["--half-views", half_views]
        if lowpass_reference:  # a prior's option: the Gaussian prior stays RELION's own
            args.append("--lowpass-reference")
    if mode != schedule.GAUSSIAN or record:
        args += ["--denoiser-input", denoiser_input]
    if mode in (schedule.CWRED, schedule.CWRED_SHELL):
        args += ["--cw-low", "%g" % cw_low, "--cw-high", "%g" % cw_high]
    if worker:
        args += ["--worker", worker]
    if record:
        args += ["--record", record]
    if keep:
        args.append("--keep")
    return args


def hook_command(args, python=None):
    """The value of RELION_EXTERNAL_RECONSTRUCT_EXECUTABLE for hook_args()."""
    return " ".join([python or sys.executable, "-m", "redprior_exrecon"]
                    + [shlex.quote(a) for a in args])


def _exrecon_doc():
    """The program's own docstring; imported here, not at the top, since exrecon imports us."""
    from . import exrecon

    return exrecon.__doc__
