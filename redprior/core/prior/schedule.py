"""Lambda schedules for regularisation by denoising (Kimanius et al. 2021, eq. 17 and sec. 4.3).

Modes: gaussian (lambda 0: RELION's own prior), red (a fixed lambda), cwred (the paper's
confidence weighting: a scalar lambda from the nominal resolution d of the half-map FSC) and
cwred-shell (beyond the paper, its sec. 5: "the denoiser performance likely varies over
different resolution shells"). In cwred-shell the lambda of Fourier shell s is

    lambda_s = red_lambda * w(d) * L_d(s),

where w(d) is the CW-RED ramp of cwred (0 worse than cw_low, 1 better than cw_high) and L_d(s)
is the denoiser's per-shell table at resolution d: the fraction of the missing correlation of
x~ in shell s that one denoiser pass recovered on validation maps of about that resolution
(core.denoiser.single_pass.shell_table_from_fscs / shell_table_row; 0 where the denoiser
does not help).
The scalar ramp still decides when the denoiser is trusted at all; the table only takes lambda
down in the shells where one pass did not add correlation. Since L_d(s) <= 1, cwred-shell is
never more aggressive than cwred with the same thresholds.
"""
import numpy as np

GAUSSIAN, RED, CWRED, CWRED_SHELL = "gaussian", "red", "cwred", "cwred-shell"
MODES = (GAUSSIAN, RED, CWRED, CWRED_SHELL)

# The paper's CW-RED ramp (sec. 4.3): lambda 0 worse than 10 A, 1 better than 4.5 A. Used when
# a denoiser's single-pass curve suggests no thresholds of its own.
CW_LOW_DEFAULT = 10.0
CW_HIGH_DEFAULT = 4.5


def ramp_of(meta):
    """(low, high) in A: a denoiser's own CW-RED ramp (its metadata's cw_low / cw_high, from
    its single-pass curve or the quality benchmark, see threshold_reason), else the paper's."""
    low, high = (meta or {}).get("cw_low"), (meta or {}).get("cw_high")
    if low and high:
        return float(low), float(high)
    return CW_LOW_DEFAULT, CW_HIGH_DEFAULT


def shipped_ramp():
    """The shipped denoiser's ramp (the refine form's default), else the paper's."""
    from redprior.core.denoiser.model import DenoiserError, read_metadata
    from redprior.core.io.shipped import DEFAULT_DENOISER

    try:
        return ramp_of(read_metadata(DEFAULT_DENOISER))
    except DenoiserError:
        return CW_LOW_DEFAULT, CW_HIGH_DEFAULT


def cwred_lambda(resolution, low=CW_LOW_DEFAULT, high=CW_HIGH_DEFAULT):
    """CW-RED confidence: 0 worse than `low` A, 1 better than `high` A, linear in A between."""
    if not np.isfinite(resolution) or resolution >= low:
        return 0.0
    if resolution <= high:
        return 1.0
    return float((low - resolution) / (low - high))


def schedule_lambda(mode, resolution, red_lambda=1.0, low=CW_LOW_DEFAULT, high=CW_HIGH_DEFAULT):
    """The scalar lambda applied in update (17) for one call."""
    if mode == GAUSSIAN:
        return 0.0
    if mode == RED:
        return float(red_lambda)
    if mode in (CWRED, CWRED_SHELL):  # cwred-shell: the scalar part (see lambda_per_shell)
        return red_lambda * cwred_lambda(resolution, low, high)
    raise ValueError(f"Unknown prior mode '{mode}'; use one of {', '.join(MODES)}.")


def has_shell_table(meta):
    """True when denoiser metadata hold a usable per-shell lambda table (one finite row)."""
    table = (meta or {}).get("per_shell_lambda") or {}
    rows = table.get("lambda") or []
    return any(r is not None and len(r) and all(v is not None and np.isfinite(v) for v in r)
               for r in rows)


def lambda_per_shell(table, resolution, ori_size, pixel_size, scalar):
    """cwred-shell lambda per shell (index round(r/pad) as core.prior.update.red_update uses it).

    table: the metadata's 'per_shell_lambda' (core.denoiser.single_pass.metadata_fields); scalar: the
    cwred part red_lambda * w(d) (schedule_lambda). Returns an array of length ori_size:
    shells beyond Nyquist (the cube's corners, which RELION never fills) are 0.
    """
    from redprior.core.denoiser.single_pass import shell_table_row

    # JSON stores NaN (empty resolution bins) as null
    rows = [[np.nan if v is None else v for v in row] for row in table["lambda"]]
    clean = dict(table, **{"lambda": rows})
    out = np.zeros(int(ori_size))
    if scalar <= 0:
        return out
    per = shell_table_row(clean, resolution, int(ori_size), float(pixel_size))
    out[:len(per)] = np.clip(per, 0.0, 1.0) * float(scalar)
    return out


# Shells of the raised-cosine edge of resolution_cap beyond the current resolution.
CAP_EDGE_SHELLS = 2
# The refine form's default for the cap (decided by the quality benchmark, README "Benchmarks").
CAP_DEFAULT = False


def resolution_cap(shell, n, edge=CAP_EDGE_SHELLS):
    """Per-shell factor of lambda (length n) for a prior limited to the current resolution:
    1 up to `shell` (the last shell whose half-map FSC is at or above the threshold), a
    raised cosine to 0 over `edge` shells beyond, 0 further out.

    Why: the denoiser puts features into both half-maps alike; beyond the resolution the data
    support, those features correlate the halves and the FSC runs ahead of the truth. Up to
    `shell` the data already agree, so the prior can help there without claiming resolution.
    (RELION 5's Blush goes further, its "spectral trailing": the whole map, data too, is cut
    there; the hook's --lowpass-reference applies this profile so.)"""
    out = np.zeros(int(n))
    top = min(max(int(shell), 0), len(out) - 1)
    out[:top + 1] = 1.0
    for j in range(1, edge + 1):
        if top + j < len(out):
            out[top + j] = 0.5 * (1.0 + np.cos(np.pi * j / (edge + 1)))
    return out


def fixed_cap(resolution_A, n, pixel_size, edge=CAP_EDGE_SHELLS):
    """resolution_cap() at a fixed resolution (A) instead of the current one: 1 up to the last
    shell at or coarser than resolution_A, whatever the data reach.

    Why: the papers' "train only up to an intermediate resolution, so that protein-like
    features beyond it remain independent evidence" (Kimanius et al. 2021, section 5), applied
    to the prior: beyond resolution_A each half's reference is its own data's."""
    return resolution_cap(int(np.floor(n * pixel_size / float(resolution_A))), n, edge)
