"""Single-pass evaluation of a denoiser (Kimanius et al. 2021, Fig. 1C) and CW-RED settings from it.

For each validation pair (x~, target):
  * the L^p ratios ||f(x~) - gt||_p / ||x~ - gt||_p, p = 1, 2 (< 1: the denoiser helps),
    averaged per bin of nominal resolution;
  * per Fourier shell, FSC(f(x~), gt) and FSC(x~, gt), averaged per resolution bin.
"gt" is the FSC-filtered target the network is trained towards (the paper does not say
which it used): the unfiltered ground truth would count every shell that the noise has
wiped out as an error of the denoiser. (For per-shell FSCs the filter only matters where
it is zero: a positive factor per shell does not change a shell's correlation.)

Suggested CW-RED thresholds (suggest_thresholds), on the binned L2 ratio with tolerance tol:
  starting at the finest resolution bin and moving to coarser ones while the ratio stays
  below 1 - tol (the run where the denoiser helps):
  * cw_low  = where that run ends: the resolution at which the ratio rises to 1 - tol
    (linear interpolation in 1/d between bin centres); lambda 0 for maps worse than it;
  * cw_high = the coarsest resolution at which the ratio is within tol of its minimum over
    the run (the start of the plateau); lambda 1 for maps better than it.
  If the finest bin has no gain, or the ratio is within tol of its minimum at the coarsest
  bin of the run (no rise towards low resolution: nothing to place a ramp on), no thresholds
  are suggested (None, with the reason).
Per-shell lambda (for a per-shell CW-RED mode; core.prior.update.red_update takes an array indexed
by shell): lambda_s = clip((FSC_f - FSC_x) / (1 - FSC_x), 0, 1), the fraction of the missing
correlation of x~ in shell s that one pass of the denoiser recovers (0: no gain or a loss).
"""
import numpy as np

from redprior.core.fourier.fsc import fsc as fsc_of

DEFAULT_BINS = (2.0, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 10.0, 12.0, 15.0, 20.0, 30.0, 50.0)
TOLERANCE = 0.02
RULE = ("cw_low: coarsest resolution of the run of bins, from the finest on, whose L2 ratio "
        "is below 1 - tol; cw_high: coarsest resolution whose L2 ratio is within tol of the "
        "run's minimum (1/d interpolation between bin centres)")


def keras_denoise_fn(model):
    """f(map) for a Keras model trained by core.denoiser.training (per-map standardisation, undone)."""
    def f(x):
        mu, sd = float(np.mean(x)), float(np.std(x))
        sd = sd if sd > 0 else 1.0
        xs = ((x - mu) / sd).astype(np.float32)[None, ..., None]
        return np.asarray(model(xs, training=False))[0, ..., 0] * sd + mu
    return f


def denoiser_fn(denoiser, pixel_size):
    """f(map) for a loaded core.denoiser.model.Denoiser (resampling and metadata included)."""
    return lambda x: denoiser(x, pixel_size)


def lp_ratio(denoised, noisy, gt, p):
    num = np.sum(np.abs(np.asarray(denoised, np.float64) - gt) ** p) ** (1.0 / p)
    den = np.sum(np.abs(np.asarray(noisy, np.float64) - gt) ** p) ** (1.0 / p)
    return float(num / den) if den > 0 else float("nan")


def _pairs(source, indices):
    if hasattr(source, "load") and hasattr(source, "entries"):  # a PairStore
        idx = range(len(source)) if indices is None else indices
        for i in idx:
            p = source.load(int(i))
            yield p["x"], p["target"], p["resolution"]
    else:
        for p in source:
            if isinstance(p, dict):
                yield p["x"], p["target"], p["resolution"]
            else:
                yield p[0], p[1], p[3]


def evaluate(denoise_fn, source, indices=None, bins=DEFAULT_BINS, pixel_size=None,
             tol=TOLERANCE):
    """Single-pass statistics of denoise_fn on pairs (a PairStore with indices, or Pairs).

    Returns a dict: per map (resolution, ratio_l1, ratio_l2); per resolution bin [edge_i,
    edge_i+1): count, mean ratio_l1 / ratio_l2, mean per-shell FSCs of x~ and f(x~) against the
    target and the per-shell lambda table; the suggested thresholds; box and pixel size.
    """
    edges = np.asarray(bins, dtype=np.float64)
    nb = len(edges) - 1
    if pixel_size is None:
        pixel_size = getattr(source, "pixel_size", None) or 1.0
    maps = []
    box = None
    sums = dict(l1=np.zeros(nb), l2=np.zeros(nb), count=np.zeros(nb, dtype=np.int64))
    fsc_x = fsc_f = None
    for x, gt, res in _pairs(source, indices):
        gt = np.asarray(gt, dtype=np.float64)
        y = denoise_fn(np.asarray(x, dtype=np.float32))
        r1, r2 = lp_ratio(y, x, gt, 1), lp_ratio(y, x, gt, 2)
        maps.append(dict(resolution=float(res), ratio_l1=r1, ratio_l2=r2))
        b = int(np.searchsorted(edges, res, side="right")) - 1
        if not (0 <= b < nb) or not np.isfinite(r2):
            continue  # outside the binned range (e.g. no resolution at all)
        if box is None:
            box = x.shape[0]
            fsc_x = np.zeros((nb, box // 2 + 1))
            fsc_f = np.zeros((nb, box // 2 + 1))
        sums["l1"][b] += r1
        sums["l2"][b] += r2
        sums["count"][b] += 1
        fsc_x[b] += fsc_of(np.asarray(x, np.float64), gt)
        fsc_f[b] += fsc_of(np.asarray(y, np.float64), gt)
    cnt = sums["count"]
    with np.errstate(invalid="ignore", divide="ignore"):
        l1 = np.where(cnt > 0, sums["l1"] / cnt, np.nan)
        l2 = np.where(cnt > 0, sums["l2"] / cnt, np.nan)
        if box is not None:
            fsc_x = np.where(cnt[:, None] > 0, fsc_x / cnt[:, None], np.nan)
            fsc_f = np.where(cnt[:, None] > 0, fsc_f / cnt[:, None], np.nan)
    centres = np.sqrt(edges[:-1] * edges[1:])
    low, high, reason = suggest_thresholds(centres, l2, tol)
    out = dict(bins=edges.tolist(), centres=centres.tolist(), count=cnt.tolist(),
               ratio_l1=l1.tolist(), ratio_l2=l2.tolist(), maps=maps, cw_low=low, cw_high=high,
               threshold_reason=reason, tolerance=tol, box=box, pixel_size=float(pixel_size))
    if box is not None:
        out["per_shell"] = dict(
            centres=centres.tolist(),
            frequency=(np.arange(box // 2 + 1) / (box * float(pixel_size))).tolist(),
            fsc_input=fsc_x.tolist(), fsc_denoised=fsc_f.tolist(),
            **{"lambda": shell_table_from_fscs(fsc_x, fsc_f).tolist()})
    return out


def shell_table_from_fscs(fsc_input, fsc_denoised):
    """clip((FSC_f - FSC_x) / (1 - FSC_x), 0, 1) per shell; NaN rows (empty bins) stay NaN."""
    cx = np.asarray(fsc_input, dtype=np.float64)
    cf = np.asarray(fsc_denoised, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        lam = (cf - cx) / np.maximum(1.0 - cx, 1e-3)
        return np.where(np.isnan(lam), np.nan, np.clip(lam, 0.0, 1.0))


def _crossing(d_in, r_in, d_out, r_out, level):
    """Resolution between two bin centres where the ratio reaches `level` (linear in 1/d)."""
    if r_out == r_in:
        return float(d_out)
    t = (level - r_in) / (r_out - r_in)
    return float(1.0 / (1.0 / d_in + t * (1.0 / d_out - 1.0 / d_in)))


def suggest_thresholds(resolution, ratio_l2, tol=TOLERANCE):
    """(cw_low, cw_high, reason) from a binned L2-ratio curve; see the module docstring."""
    d = np.asarray(resolution, dtype=np.float64)
    r = np.asarray(ratio_l2, dtype=np.float64)
    ok = np.isfinite(d) & np.isfinite(r)
    d, r = d[ok], r[ok]
    if len(d) == 0:
        return None, None, "no resolution bin has validation maps"
    order = np.argsort(d)  # finest first
    d, r = d[order], r[order]
    if r[0] >= 1.0 - tol:
        return None, None, (f"no gain at the finest resolution measured ({d[0]:.2f} A: L2 ratio "
                            f"{r[0]:.3f}); keep lambda 0")
    j = 0
    while j + 1 < len(r) and r[j + 1] < 1.0 - tol:
        j += 1
    if j + 1 < len(r):
        low = _crossing(d[j], r[j], d[j + 1], r[j + 1], 1.0 - tol)
        reason = "measured"
    else:
        low = float(d[j])
        reason = (f"the gain reaches the coarsest bin measured ({d[j]:.1f} A), so cw_low is a "
                  "lower bound")
    run = r[:j + 1]
    level = float(run.min()) + tol
    i = int(np.nonzero(run <= level)[0].max())
    high = float(d[i])
    if i + 1 <= j:
        high = _crossing(d[i], r[i], d[i + 1], r[i + 1], level)
    if high >= low:
        # the gain is as large at the coarsest resolution measured as anywhere: the curve
        # has no rise towards low resolution, so it cannot place a ramp
        return None, None, (f"the L2 ratio does not rise towards low resolution ({r[0]:.3f} at "
                            f"{d[0]:.1f} A, {r[j]:.3f} at {d[j]:.1f} A): no ramp can be read "
                            f"from this curve; use the paper's 10 / 4.5 A")
    return float(low), float(high), reason


def shell_table_row(per_shell, resolution, box, pixel_size):
    """Per-shell lambda (length box//2+1, shell index as red_update uses) for a map at `resolution`.

    per_shell: the 'per_shell' dict of evaluate() (or the metadata's 'per_shell_lambda'). The
    row of the resolution bin nearest (in log) among those with data is interpolated onto the
    frequencies of the requested box; shells beyond the measured frequencies get 0.
    """
    lam = np.asarray(per_shell["lambda"], dtype=np.float64)
    centres = np.asarray(per_shell["centres"] if "centres" in per_shell else [], dtype=np.float64)
    freq = np.asarray(per_shell["frequency"], dtype=np.float64)
    rows = [i for i in range(len(lam)) if np.all(np.isfinite(lam[i]))]
    if not rows:
        return np.zeros(box // 2 + 1)
    if not np.isfinite(resolution):
        row = lam[max(rows, key=lambda i: centres[i])]
    else:
        row = lam[min(rows, key=lambda i: abs(np.log(centres[i] / resolution)))]
    f_new = np.arange(box // 2 + 1) / (box * float(pixel_size))
    return np.interp(f_new, freq, row, right=0.0)


MEDIAN_RANGES = (("better than 10 A", 0.0, 10.0), ("4-8 A", 4.0, 8.0),
                 ("10-30 A", 10.0, 30.0), ("all", 0.0, np.inf))


def median_ratios(maps, ranges=MEDIAN_RANGES):
    """Median L2 (and L1) ratio of the maps (evaluate()'s per-map list) in each resolution
    range [low, high): {label: dict(maps, median_l2, median_l1)}; empty ranges are left out."""
    res = np.array([m["resolution"] for m in maps], dtype=np.float64)
    l2 = np.array([m["ratio_l2"] for m in maps], dtype=np.float64)
    l1 = np.array([m["ratio_l1"] for m in maps], dtype=np.float64)
    out = {}
    for label, low, high in ranges:
        sel = (res >= low) & (res < high) & np.isfinite(l2)
        if sel.any():
            out[label] = dict(maps=int(sel.sum()), median_l2=float(np.median(l2[sel])),
                              median_l1=float(np.median(l1[sel])))
    return out


def metadata_fields(result):
    """The part of an evaluate() result stored in the denoiser's .json metadata."""
    fields = dict(
        single_pass=dict(bins=result["bins"], centres=result["centres"], count=result["count"],
                         ratio_l1=result["ratio_l1"], ratio_l2=result["ratio_l2"],
                         target="fsc_filtered", tolerance=result["tolerance"],
                         maps=result["maps"], medians=median_ratios(result["maps"])),
        cw_low=result["cw_low"], cw_high=result["cw_high"], threshold_rule=RULE,
        threshold_reason=result["threshold_reason"])
    if "per_shell" in result:
        ps = result["per_shell"]
        fields["per_shell_lambda"] = dict(centres=ps["centres"], frequency=ps["frequency"],
                                          **{"lambda": ps["lambda"]})
    return fields
