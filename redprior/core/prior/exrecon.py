"""The program RELION runs through RELION_EXTERNAL_RECONSTRUCT_EXECUTABLE.

RELION appends the STAR path to the command, so options come first:
    python -m redprior_exrecon --mode cwred --model m.keras --angpix 2 --log ext.log X.star
It reads B, K, tau2 and the FSC, applies update (17) with the lambda of the chosen schedule
(cwred-shell: one lambda per Fourier shell, see core.prior.schedule), writes the real-space map RELION
expects (atomically: both halves run at the same time) and removes RELION's large
intermediate files unless --keep. Any failure exits non-zero with a readable message, which
stops RELION: the prior is never dropped silently.
"""
import os
import sys
import time

import numpy as np

from redprior.core.denoiser.views import denoise_in_view
from redprior.core.fourier.filters import shell_filter
from redprior.core.fourier.fsc import read_resolution
from redprior.core.fourier.pruned import add_band_block
from redprior.core.relion.contract import (ContractError, cleanup, load_fourier, read_job,
                                           write_result)
from redprior.core.relion.program import RelionProgram, find_program
from redprior.core.relion.reconstruct import Reconstructor, direct_map

from . import schedule
from .history import append_log
from .options import DIRECT, build_parser
from .settings import PriorSettings, prior_problems
from .update import red_numerator, red_update, unregularised_map


def _pixel_from_relion(args, job):
    """RELION 4 and 5 write the pixel size into the STAR file: use it when --angpix is not
    given, and refuse an --angpix that contradicts it (a wrong one would resample the map
    for the denoiser by the wrong factor)."""
    if not job.pixel_size or job.pixel_size <= 0:
        return
    if not args.angpix:
        args.angpix = job.pixel_size
    elif abs(args.angpix - job.pixel_size) > 0.01 * job.pixel_size:
        raise ContractError(f"--angpix {args.angpix:g} but RELION says the maps are at "
                            f"{job.pixel_size:g} A/px (rlnPixelSize in {args.star}): give "
                            "the particles' pixel size, or leave --angpix out.")


def check_settings(args):
    """Refuse what the refine protocol's form refuses (core.prior.settings), before any work;
    a ramp not given is the model's own (schedule.ramp_of), as on the refine form."""
    if args.mode != schedule.GAUSSIAN and not args.model:
        raise ContractError(f"--mode {args.mode} needs --model (a denoiser .keras file).")
    if not args.prior_up_to >= 0:  # also refuses NaN
        raise ContractError(f"--prior-up-to {args.prior_up_to:g}: give a resolution in A, "
                            "or 0 for the prior on every shell.")
    meta = None
    if args.model and args.mode in (schedule.CWRED, schedule.CWRED_SHELL):
        from redprior.core.denoiser.model import DenoiserError, read_metadata
        try:  # read once per call: the ramp and the per-shell table come from it
            meta = read_metadata(args.model)
        except DenoiserError as exc:
            raise ContractError(str(exc)) from exc
    args.model_meta = meta
    if args.cw_low is None or args.cw_high is None:
        low, high = schedule.ramp_of(meta)
        args.cw_low = low if args.cw_low is None else args.cw_low
        args.cw_high = high if args.cw_high is None else args.cw_high
    # Gaussian mode may run without --angpix (the resolution in the log is then per pixel)
    pixel = args.angpix if (args.angpix or args.mode != schedule.GAUSSIAN) else 1.0
    problems = prior_problems(PriorSettings(args.mode, pixel, args.lam, args.cw_low,
                                            args.cw_high, args.model))
    if problems:
        raise ContractError(" ".join(problems))


def run(args):
    t0 = time.time()
    job = read_job(args.star)
    if args.output:
        job.result = args.output
    _pixel_from_relion(args, job)
    check_settings(args)
    table = _shell_table(args) if args.mode == schedule.CWRED_SHELL else None
    angpix = args.angpix if args.angpix > 0 else 1.0
    if job.fsc is None:
        if args.mode in (schedule.CWRED, schedule.CWRED_SHELL):
            raise ContractError(f"{args.star} has no rlnGoldStandardFsc column, so the "
                                f"{args.mode} lambda cannot be computed (RELION's auto-refine "
                                "with split halves always writes it).")
        job.fsc = np.zeros(job.ori_size // 2 + 1)  # gaussian / red: the log's resolution only
    fsc_warning = None
    if not np.all(np.isfinite(job.fsc)):
        fsc_warning = (f"the FSC in {os.path.basename(args.star)} has "
                       f"{int(np.sum(~np.isfinite(job.fsc)))} NaN values: no confidence, "
                       "lambda 0 for CW-RED")
    # the schedule's resolution: RELION's gold-standard FSC of this iteration, read by the
    # one rule (core.fourier.fsc); "never crosses" counts as Nyquist, "below from the first
    # shell" (or an FSC of NaNs) as no confidence (lambda 0)
    fsc_res = read_resolution(job.fsc, job.ori_size, angpix, args.fsc_threshold)
    resolution = fsc_res.bound_A
    lam = schedule.schedule_lambda(args.mode, resolution, args.lam, args.cw_low, args.cw_high)
    lam_scalar, shell = lam, None
    if table is not None:
        shell = schedule.lambda_per_shell(table, resolution, job.ori_size, angpix, lam)
    if args.cap_at_resolution:
        cap = schedule.resolution_cap(fsc_res.shell, job.ori_size)
        shell = cap * (lam if shell is None else shell)
    if args.prior_up_to > 0:
        cap = schedule.fixed_cap(args.prior_up_to, job.ori_size, angpix)
        shell = cap * (lam if shell is None else shell)
    if table is not None:
        # the scalar that goes into the log and the summaries: the mean over the shells that
        # carry the prior (minres_map .. RELION's current size), as RELION sees them
        lo, hi = max(1, args.minres_map), max(1, job.r_max)
        lam = float(np.mean(shell[lo:hi + 1])) if hi >= lo else 0.0
    applied = lam if shell is None else shell
    program = find_program() if args.reconstruction != "numpy" else None
    if args.reconstruction == "relion" and not program:
        raise ContractError("--reconstruction relion: relion_external_reconstruct was not "
                            "found (PATH, $RELION_HOME/bin).")
    run_update = _update_by_program if program else _update_in_numpy
    timing = {}  # seconds in RELION's program and in the denoiser, for the log
    vol, where = run_update(args, job, lam, applied, resolution, angpix, timing)
    if not np.all(np.isfinite(vol)):
        raise ContractError(f"The reconstruction of {args.star} has NaN or infinite values "
                            "(check RELION's B and K files).")
    # only a half's map that crossed: "never crosses" leaves nothing to cut, shell 0 all
    trail = args.lowpass_reference and job.half and fsc_res.crossed and fsc_res.shell > 0
    if trail:
        vol = shell_filter(vol, schedule.resolution_cap(fsc_res.shell, job.ori_size))
    write_result(job, vol, args.angpix)
    rec = {"iteration": job.iteration, "half": job.half, "resolution": _finite(resolution),
           "resolution_text": fsc_res.text,
           "lambda": lam, "mode": args.mode, "current_size": job.current_size,
           "pad": job.pad, "seconds": round(time.time() - t0, 3), "denoiser": where,
           "reconstruction": "relion_external_reconstruct" if program else "numpy",
           "denoiser_input": args.denoiser_input,
           **({"half_views": args.half_views} if args.mode != schedule.GAUSSIAN else {}),
           "star": os.path.basename(args.star),
           **{k: round(v, 3) for k, v in timing.items()}}
    if fsc_warning:
        rec["warning"] = fsc_warning
        print(f"redprior_exrecon: WARNING: {fsc_warning}", flush=True)
    if args.mode in (schedule.CWRED, schedule.CWRED_SHELL):
        rec["cw_ramp"] = [args.cw_low, args.cw_high]
    if args.cap_at_resolution:
        rec["cap_shell"] = fsc_res.shell
    if args.prior_up_to > 0:
        rec["prior_up_to"] = args.prior_up_to
    if trail:
        rec["lowpass_shell"] = fsc_res.shell
    if shell is not None:
        rec["lambda_scalar"] = lam_scalar
        rec["lambda_shell"] = [round(float(v), 4) for v in shell[:job.r_max + 1]]
    append_log(args.log, rec)
    if not args.keep:  # RELION's inputs go only when everything else has succeeded
        cleanup(job)
    # RELION runs us with its own stdout, so this line lands live in the protocol's log.
    detail = ""
    if table is not None:
        used = shell[max(1, args.minres_map):job.r_max + 1]
        detail = (f" (mean over shells; schedule {lam_scalar:.3f}, per-shell lambda "
                  f"{used.min() if len(used) else 0:.3f}-{used.max() if len(used) else 0:.3f})")
    if args.cap_at_resolution:
        detail += f", prior only up to shell {fsc_res.shell} (the current resolution)"
    if args.prior_up_to > 0:
        detail += f", prior only up to {args.prior_up_to:g} A"
    if trail:
        detail += f", map low-passed at shell {fsc_res.shell}"
    print(f"redprior_exrecon: iteration {job.iteration} half {job.half or 'joined'}: "
          f"resolution {fsc_res.text}, {args.mode} lambda {lam:.3f}{detail}, {rec['seconds']:.2f} s",
          flush=True)
    return rec


def _update_by_program(args, job, lam, applied, resolution, angpix, timing):
    """x~ and update (17) by RELION's own program on our inputs (core.relion.program)."""
    with RelionProgram(job, args.minres_map) as program:
        try:
            if not (lam > 0 or args.record):
                return program.map_reconstruction(), ""
            b = k = None
            if args.denoiser_input == DIRECT:
                b, k = _fourier(job)
                x_tilde = direct_map(job, b, k)
            else:  # RELION's program first: B and K are not held while it runs
                x_tilde = program.unregularised_map()
            if args.record:
                _record(args.record, job, x_tilde, angpix, resolution)
            if lam <= 0:  # recorded only: RELION's own reconstruction, B and K released first
                del b, k
                return program.map_reconstruction(), ""
            denoised, where = _denoise(args, job, x_tilde, timing)
            del x_tilde
            if b is None:
                b, k = _fourier(job)
            add_band_block(b, red_numerator(job, k, denoised, applied, args.minres_map))
            del k, denoised
            return program.map_reconstruction(b), where
        finally:
            timing["relion_seconds"] = program.seconds


def _update_in_numpy(args, job, lam, applied, resolution, angpix, timing):
    """x~ and update (17) by the numpy re-implementation (core.relion.reconstruct)."""
    b, k = load_fourier(job)
    _check_finite(job, b, k)
    rec_grid = Reconstructor(job, args.gridding_iterations)
    x_tilde = None
    if lam > 0 or args.record:
        x_tilde = (direct_map(job, b, k) if args.denoiser_input == DIRECT
                   else unregularised_map(rec_grid, b, k))
    if args.record:
        _record(args.record, job, x_tilde, angpix, resolution)
    denoised, where = _denoise(args, job, x_tilde, timing) if lam > 0 else (None, "")
    return red_update(rec_grid, b, k, denoised, applied, args.minres_map), where


def _fourier(job):
    """B and K in single precision (as RELION writes them), checked."""
    b, k = load_fourier(job, np.float32)
    _check_finite(job, b, k)
    return b, k


def _check_finite(job, b, k):
    if not (np.all(np.isfinite(b)) and np.all(np.isfinite(k))):
        raise ContractError(f"RELION's data for {job.star} contain NaN or infinite values.")


def _shell_table(args):
    """The model's per-shell lambda table (its metadata, read by check_settings); refuses
    models without one (cwred-shell)."""
    meta, model = args.model_meta, args.model
    if not schedule.has_shell_table(meta):
        raise ContractError(
            f"--mode {schedule.CWRED_SHELL} needs a per-shell lambda table in the metadata of "
            f"{model} ('per_shell_lambda', written by 'train denoiser' from its single-pass "
            "evaluation on validation structures); this model has none. Use --mode cwred, or "
            "train the denoiser with a validation fraction > 0 and two or more structures.")
    return meta["per_shell_lambda"]


def _denoise(args, job, x_tilde, timing):
    """f(x~) in this half's frame (--half-views), from the worker when one runs, else by
    loading the model here; its wall time goes into timing['denoiser_seconds']."""
    t0 = time.time()
    try:
        return denoise_in_view(lambda x: _denoised(args, x), x_tilde, job.half,
                               args.half_views)
    finally:
        timing["denoiser_seconds"] = time.time() - t0


def _denoised(args, x_tilde):
    where = "in-process"
    if args.worker:
        from redprior.core.denoiser.worker import denoise_remote
        try:
            return _checked(args, denoise_remote(args.worker, x_tilde, args.angpix,
                                                 args.worker_timeout)), "worker"
        except ConnectionError as exc:  # WorkerUnavailable: gone, stopped or too slow
            print(f"redprior_exrecon: {exc}; loading the model in this process (same prior, "
                  "slower)", flush=True)
            where = f"in-process ({exc})"
    from redprior.core.denoiser.model import Denoiser  # TensorFlow only when it is needed

    return _checked(args, Denoiser(args.model)(x_tilde, args.angpix)), where


def _checked(args, denoised):
    if not np.all(np.isfinite(denoised)):
        raise ContractError(f"The denoiser {args.model} returned NaN or infinite values.")
    return denoised


def _finite(x):
    return float(x) if np.isfinite(x) else None


def _record(folder, job, x_tilde, angpix, resolution):
    from redprior.core.io.jsonfile import write_json
    from redprior.core.io.mrc import write_map

    os.makedirs(folder, exist_ok=True)
    root = os.path.join(folder, f"it{job.iteration:03d}_half{job.half}")
    write_map(root + "_unreg.mrc", x_tilde, angpix)
    write_json(root + "_fsc.json", {"fsc": list(map(float, job.fsc)),
                                    "resolution": _finite(resolution),
                                    "ori_size": job.ori_size, "pixel_size": angpix})


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except Exception as exc:  # RELION shows only our exit status: say what happened
        msg = f"redprior_exrecon failed on {args.star}: {type(exc).__name__}: {exc}"
        print(msg, file=sys.stderr)
        try:
            append_log(args.log, {"error": msg, "star": os.path.basename(args.star)})
        except OSError:
            pass
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
