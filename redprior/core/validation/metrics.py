"""Resolution and validation of a refinement: FSCs, phase randomisation, pose errors, overfitting.

Pure numpy (no Scipion). Everything returns plain dicts of numbers and numpy arrays;
core.io.jsonfile.write_json writes them (numpy and inf handled).

Conventions:
  * FSC shells are round(|k|), 0..N/2, as RELION's getFSC (core.fourier.fsc);
  * a resolution is the last shell before the curve first drops below the threshold
    (core.fourier.fsc.read_resolution). A curve that never drops below it is reported as
    "better than Nyquist (never crosses)" with resolution_A = None: no number is invented;
  * the map compared with the ground truth is the average of the two unfiltered half-maps
    (the Volume's own map may already be low-pass filtered by the refinement program).
"""

import numpy as np

from redprior.core.fourier.fsc import fsc, mean_fsc, read_resolution, shell_resolutions
from redprior.core.geometry.masks import solvent_mask
from redprior.core.fourier.grid import radius2

THRESHOLDS = (0.143, 0.5)
RANDOMISE_FSC_AT = 0.8          # relion_postprocess --randomize_at_fsc default
CORRECTION_HANDOFF_SHELLS = 2   # relion_postprocess keeps the masked FSC 2 shells further
RANDOMISE_REPEATS = 4           # phase randomisations averaged (RELION: 1), see half_map_fscs

# Overestimation rule: the claimed resolution (last shell of the half-map FSC >= 0.143) is
# flagged when it is beyond the supported one by MORE than one Fourier shell AND by more
# than 10 % in resolution. One shell alone is the granularity of the measurement (small
# boxes); 10 % alone would flag a single-shell wobble at low resolution.
OVERESTIMATE_MIN_SHELLS = 1
OVERESTIMATE_MIN_FRACTION = 0.10
OVERESTIMATION_RULE = (
    "The half-map (gold-standard, phase-randomisation corrected) FSC = 0.143 resolution is "
    "compared with the resolution the reference supports: the FSC of the half-map average "
    "against the ground truth at 0.5 (the full-map equivalent of 0.143 between halves, "
    "sqrt(2F/(1+F)) = 0.5 for F = 0.143), or without a ground truth the FSC = 0.143 "
    "resolution of the unregularised half-maps under the same mask. It is flagged as "
    "overestimated when it claims more than %d Fourier shell(s) AND more than %d %% better "
    "than the reference." % (OVERESTIMATE_MIN_SHELLS, round(100 * OVERESTIMATE_MIN_FRACTION)))


# ---------------------------------------------------------------------------------------
# Resolution read-out
# ---------------------------------------------------------------------------------------
def resolution(curve, box, pixel_size, threshold=0.143):
    """core.fourier.fsc.read_resolution as a dict for reports and JSON (see Resolution)."""
    return read_resolution(curve, box, pixel_size, threshold).as_dict()


def resolutions(curve, box, pixel_size, thresholds=THRESHOLDS):
    """{'0.143': resolution(...), '0.5': resolution(...)} for a curve."""
    return {'%g' % t: resolution(curve, box, pixel_size, t) for t in thresholds}


def frequencies(box, pixel_size):
    """Spatial frequency (1/A) of shells 0..N/2."""
    return np.arange(box // 2 + 1) / float(box * pixel_size)


# ---------------------------------------------------------------------------------------
# Masks and phase randomisation
# ---------------------------------------------------------------------------------------
def auto_mask(vol, pixel_size):
    """Soft solvent mask for FSCs: relion_mask_create's recipe scaled to the pixel size.

    Low-pass to 15 A (never finer than 4 pixels, so noisy maps give a smooth outline),
    threshold at 10 % of the maximum, extend by 3 A and add a 6 A raised-cosine edge.
    """
    lowpass_A = max(15.0, 4.0 * pixel_size)
    extend = max(1, int(round(3.0 / pixel_size)))
    soft = max(3, int(round(6.0 / pixel_size)))
    return solvent_mask(vol, pixel_size, lowpass_A=lowpass_A, threshold=0.1,
                        extend_px=extend, soft_px=soft)


def default_mask(half1, half2, pixel_size, ground_truth=None):
    """(mask, source): auto_mask() of the ground truth when given, else of the half-map average.

    The ground truth gives the same mask for every refinement of a data set (a fair
    comparison) and one not shaped by the refinement's own noise.
    """
    if ground_truth is not None:
        return auto_mask(np.asarray(ground_truth, dtype=np.float64), pixel_size), \
            'auto (ground truth)'
    avg = 0.5 * (np.asarray(half1, dtype=np.float64) + np.asarray(half2, dtype=np.float64))
    return auto_mask(avg, pixel_size), 'auto (half-map average)'


def randomise_phases(vol, from_shell, seed=0):
    """Copy of a map whose Fourier phases at shells >= from_shell are random.

    Amplitudes are kept. The random phases are those of the FFT of real white noise, so
    Friedel symmetry holds and the result is real without further fixing.
    """
    vol = np.asarray(vol, dtype=np.float64)
    n = vol.shape[0]
    rng = np.random.default_rng(seed)
    ft = np.fft.rfftn(vol)
    noise = np.fft.rfftn(rng.standard_normal(vol.shape))
    phase = noise / np.maximum(np.abs(noise), 1e-30)
    # RELION compares |k|^2 with the shell index squared (not the rounded shell)
    beyond = radius2(n, vol.ndim) >= from_shell * from_shell
    ft = np.where(beyond, np.abs(ft) * phase, ft)
    return np.fft.irfftn(ft, s=vol.shape)


def randomisation_shell(fsc_unmasked, box=None, pixel_size=None, from_A=None,
                        fsc_at=RANDOMISE_FSC_AT):
    """Shell from which relion_postprocess randomises phases.

    from_A given: int(box * pixel / from_A). Else the first shell (> 0) where the unmasked
    FSC drops below fsc_at (0.8). -1 when the unmasked FSC never drops below it.
    """
    if from_A is not None and from_A > 0:
        return max(1, int(box * pixel_size / float(from_A)))
    curve = np.asarray(fsc_unmasked, dtype=float)
    below = np.nonzero(curve[1:] < fsc_at)[0]
    return int(below[0]) + 1 if below.size else -1


def corrected_fsc(fsc_masked, fsc_random_masked, randomise_shell):
    """FSC_true = (FSC_masked - FSC_rand) / (1 - FSC_rand) from randomise_shell + 2 on.

    Below that the masked FSC is kept (relion_postprocess, Chen et al. 2013).
    """
    masked = np.asarray(fsc_masked, dtype=float)
    rand = np.asarray(fsc_random_masked, dtype=float)
    out = masked.copy()
    start = max(randomise_shell + CORRECTION_HANDOFF_SHELLS, 0)
    with np.errstate(divide='ignore', invalid='ignore'):
        corr = (masked - rand) / (1.0 - rand)
    out[start:] = np.nan_to_num(corr[start:], nan=0.0, posinf=0.0, neginf=0.0)
    return out


def half_map_fscs(half1, half2, mask, box, pixel_size, randomise_from_A=None,
                  fsc_at=RANDOMISE_FSC_AT, seed=0, repeats=RANDOMISE_REPEATS):
    """Unmasked, masked, phase-randomised masked and corrected FSC of two half-maps.

    The phase-randomised FSC is the mean over `repeats` independent randomisations:
    relion_postprocess draws one, whose noise (about 1/sqrt(voxels in the shell x mask
    fraction)) moves the corrected curve by +-0.1 at small boxes; the mean estimates the same
    expectation with less noise. repeats=1 is RELION's procedure.

    Returns dict(unmasked, masked, random, corrected (arrays), randomise_shell,
    randomise_from_A, note). When the unmasked FSC never drops below fsc_at (and no
    resolution is given) nothing is randomised: corrected = masked, and note says so.
    """
    h1 = np.asarray(half1, dtype=np.float64)
    h2 = np.asarray(half2, dtype=np.float64)
    m = np.asarray(mask, dtype=np.float64)
    unmasked = fsc(h1, h2)
    masked = fsc(h1 * m, h2 * m)
    shell = randomisation_shell(unmasked, box, pixel_size, randomise_from_A, fsc_at)
    note = ''
    if shell < 1 or shell > box // 2:
        random = np.zeros_like(masked)
        corrected = masked.copy()
        note = ('The unmasked FSC never drops below %g: phases were not randomised and the '
                'masked FSC is reported uncorrected.' % fsc_at)
        shell = -1
    else:
        random = np.zeros_like(masked)
        for i in range(max(1, int(repeats))):
            # independent phases for the two halves (relion_postprocess draws them in turn)
            r1 = randomise_phases(h1, shell, seed=seed + 2 * i)
            r2 = randomise_phases(h2, shell, seed=seed + 2 * i + 1)
            random += fsc(r1 * m, r2 * m)
        random /= max(1, int(repeats))
        corrected = corrected_fsc(masked, random, shell)
    return dict(unmasked=unmasked, masked=masked, random=random, corrected=corrected,
                randomise_shell=int(shell),
                randomise_from_A=(float(box * pixel_size / shell) if shell > 0 else None),
                note=note)


def expected_fsc_to_truth(fsc_half):
    """FSC of the half-map average against the truth implied by the half-map FSC.

    With independent noise, FSC_half = SNR/(1+SNR) per half, so the average (twice the SNR)
    correlates with the truth as sqrt(2F/(1+F)) (Rosenthal & Henderson 2003).
    """
    f = np.clip(np.asarray(fsc_half, dtype=float), 0.0, 1.0)
    return np.sqrt(2.0 * f / (1.0 + f))


# ---------------------------------------------------------------------------------------
# Overestimation check
# ---------------------------------------------------------------------------------------
def supported_half_fsc(fsc_truth):
    """The half-map FSC that an FSC T of the half-map average to the truth supports: T^2/(2-T^2)
    (sign kept), the inverse of expected_fsc_to_truth. Compared in this domain because
    sqrt(2F/(1+F)) is biased upwards wherever F is noise around 0 (measured +0.13 on average
    for independent halves beyond their resolution), T^2/(2-T^2) is not."""
    t = np.asarray(fsc_truth, dtype=float)
    return t * np.abs(t) / (2.0 - t ** 2)


def fsc_excess(fsc_half, fsc_truth, shells_A):
    """The half-map FSC minus supported_half_fsc(fsc_truth) over shells 1..N/2: mean, largest
    and where (A). The over-estimation question over the whole curve: the shell count of
    overestimation_check reads one crossing, and a flat curve near 0.143 turns a small excess
    into many shells."""
    n = len(shells_A)
    excess = np.asarray(fsc_half, dtype=float)[1:n] - supported_half_fsc(fsc_truth)[1:n]
    k = int(np.argmax(excess))
    return dict(mean=float(np.mean(excess)), max=float(excess[k]),
                max_at_A=float(shells_A[1 + k]))


def fsc_at_claim(fsc_truth, claimed):
    """The FSC to the truth at the last shell the half-maps claim (a resolution() dict of the
    half-map FSC at 0.143): 0.5 for an honest claim, below it for an over-claim; None when
    they claim no shell at all. The size of an over-claim in FSC terms, which the shell count
    hides where the FSC to the truth runs flat near 0.5."""
    if int(claimed['shell']) <= 0:
        return None
    curve = np.asarray(fsc_truth, dtype=float)
    return float(curve[min(int(claimed['shell']), len(curve) - 1)])


def overestimation_check(claimed, supported, box, pixel_size, against):
    """Compare two resolution() dicts: is `claimed` better than `supported` by the rule?"""
    k_c, k_s = claimed['shell'], supported['shell']
    excess = k_c - k_s
    # shells are proportional to 1/resolution, so the resolution ratio is k_c / k_s
    ratio = (k_c / float(k_s)) if k_s > 0 else (np.inf if k_c > 0 else 1.0)
    over = bool(excess > OVERESTIMATE_MIN_SHELLS and ratio > 1.0 + OVERESTIMATE_MIN_FRACTION)
    verdict = 'OVERESTIMATED' if over else 'consistent'
    text = ('%s: half-maps claim %s (FSC %g), supported by %s: %s (FSC %g); %+d shell(s)'
            % (verdict, claimed['text'], claimed['threshold'], against, supported['text'],
               supported['threshold'], excess))
    return dict(against=against, claimed=claimed, supported=supported, shell_excess=int(excess),
                ratio=(float(ratio) if np.isfinite(ratio) else None), overestimated=over,
                text=text)


# ---------------------------------------------------------------------------------------
# Maps
# ---------------------------------------------------------------------------------------
def _check_maps(named):
    shapes = {name: np.shape(v) for name, v in named.items() if v is not None}
    ref_name, ref_shape = next(iter(shapes.items()))
    if len(ref_shape) != 3 or len(set(ref_shape)) != 1:
        raise ValueError(f"{ref_name} has shape {ref_shape}; cubic 3D maps are required.")
    for name, shape in shapes.items():
        if shape != ref_shape:
            raise ValueError(f"{name} has shape {shape} but {ref_name} has {ref_shape}: "
                             "resample/crop the maps to the same box before validating.")
    return ref_shape[0]


def validate_maps(half1, half2, pixel_size, mask=None, ground_truth=None,
                  unreg_half1=None, unreg_half2=None, randomise_from_A=None,
                  fsc_at=RANDOMISE_FSC_AT, seed=0, repeats=RANDOMISE_REPEATS,
                  mask_source=None):
    """All FSC curves, resolutions and the overestimation verdict for one refinement.

    mask: None -> default_mask() (see there). mask_source: how a given mask was made, for
    the report (default 'given'). Returns a dict with box, pixel_size, nyquist_A,
    frequencies, shells_A, mask, curves {key: label, fsc, main_threshold, resolution},
    randomise_shell, randomise_from_A, notes and overestimation; arrays are numpy.
    """
    box = _check_maps(dict(half1=half1, half2=half2, mask=mask, ground_truth=ground_truth,
                           unreg_half1=unreg_half1, unreg_half2=unreg_half2))
    if (unreg_half1 is None) != (unreg_half2 is None):
        raise ValueError("Give both unregularised half-maps or none.")
    h1 = np.asarray(half1, dtype=np.float64)
    h2 = np.asarray(half2, dtype=np.float64)
    avg = 0.5 * (h1 + h2)
    if mask is None:
        mask, source = default_mask(h1, h2, pixel_size, ground_truth)
    else:
        source = mask_source or 'given'
        mask = np.asarray(mask, dtype=np.float64)
        if mask.min() < -1e-3 or mask.max() > 1.0 + 1e-3:
            raise ValueError("The mask must take values in [0, 1] (got %.3g..%.3g)."
                             % (mask.min(), mask.max()))

    res = dict(box=int(box), pixel_size=float(pixel_size), nyquist_A=2.0 * pixel_size,
               frequencies=frequencies(box, pixel_size),
               shells_A=shell_resolutions(box, pixel_size),
               mask=dict(source=source, fraction=float(np.mean(mask))), curves={},
               notes=[])

    def add(key, label, curve, main):
        res['curves'][key] = dict(label=label, fsc=np.asarray(curve, dtype=float),
                                  main_threshold=main,
                                  resolution=resolutions(curve, box, pixel_size))

    hm = half_map_fscs(h1, h2, mask, box, pixel_size, randomise_from_A, fsc_at, seed, repeats)
    res['randomise_shell'] = hm['randomise_shell']
    res['randomise_from_A'] = hm['randomise_from_A']
    if hm['note']:
        res['notes'].append(hm['note'])
    rand_label = ('half-maps, masked, phases randomised beyond %.1f A' % hm['randomise_from_A']
                  if hm['randomise_from_A'] else 'half-maps, masked, phases randomised (none)')
    add('half_unmasked', 'half-maps, unmasked', hm['unmasked'], 0.143)
    add('half_masked', 'half-maps, masked', hm['masked'], 0.143)
    add('half_random', rand_label, hm['random'], 0.143)
    add('half_corrected', 'half-maps, masked, corrected (gold standard)', hm['corrected'], 0.143)

    checks = []
    claimed = res['curves']['half_corrected']['resolution']['0.143']
    if ground_truth is not None:
        gt = np.asarray(ground_truth, dtype=np.float64)
        add('gt_masked', 'map vs ground truth, masked', fsc(avg * mask, gt * mask), 0.5)
        add('gt_unmasked', 'map vs ground truth, unmasked', fsc(avg, gt), 0.5)
        add('gt_expected', 'map vs ground truth expected from half-maps',
            expected_fsc_to_truth(hm['corrected']), 0.5)
        check = overestimation_check(
            claimed, res['curves']['gt_masked']['resolution']['0.5'], box, pixel_size,
            'the ground truth')
        res['fsc_excess'] = fsc_excess(hm['corrected'], res['curves']['gt_masked']['fsc'],
                                       res['shells_A'])
        check['truth_fsc_at_claim'] = fsc_at_claim(res['curves']['gt_masked']['fsc'], claimed)
        if check['truth_fsc_at_claim'] is not None:
            check['text'] += ('; at the last shell the half-maps claim (%.2f Å) the FSC to the '
                              'truth is %.2f (0.5 for an honest claim)'
                              % (claimed['limit_A'], check['truth_fsc_at_claim']))
        check['text'] += ('; over the whole curve the half-map FSC exceeds what the FSC to the '
                          'truth supports by %+.3f on average (largest %+.3f, at %.1f A)'
                          % (res['fsc_excess']['mean'], res['fsc_excess']['max'],
                             res['fsc_excess']['max_at_A']))
        checks.append(check)
    if unreg_half1 is not None:
        un = half_map_fscs(unreg_half1, unreg_half2, mask, box, pixel_size,
                           randomise_from_A, fsc_at, seed + 1000, repeats)
        add('unreg_unmasked', 'unregularised half-maps, unmasked', un['unmasked'], 0.143)
        add('unreg_corrected', 'unregularised half-maps, masked, corrected',
            un['corrected'], 0.143)
        checks.append(overestimation_check(
            claimed, res['curves']['unreg_corrected']['resolution']['0.143'], box, pixel_size,
            'the unregularised half-maps'))
    res['overestimation'] = overestimation_summary(checks)
    return res


def overestimation_summary(checks):
    """dict(checks, overestimated (None when there is no reference), verdict, rule)."""
    if not checks:
        return dict(checks=[], overestimated=None, rule=OVERESTIMATION_RULE,
                    verdict='not checked: give a ground truth or the unregularised half-maps')
    over = any(c['overestimated'] for c in checks)
    verdict = ('OVERESTIMATED: ' if over else 'consistent: ') + '; '.join(
        c['text'].split(': ', 1)[1] for c in checks)
    return dict(checks=checks, overestimated=over, rule=OVERESTIMATION_RULE, verdict=verdict)


# ---------------------------------------------------------------------------------------
# One refinement against the truth, in figures (the quality benchmark's row)
# ---------------------------------------------------------------------------------------
def quality_metrics(half1, half2, ground_truth, pixel_size, R_true=None, R_est=None,
                    symmetry='C1', mask=None):
    """The quality benchmark's figures for one refinement with a known ground truth.

    gt_res_05 / gt_res_0143: masked FSC of the half-map average to the truth (auto_mask of the
    truth) at 0.5 / 0.143, in A; a curve that never crosses gives Nyquist and
    gt_res_*_crossed False (the same rule as everywhere: resolution()). gt_fsc_mean: that
    curve's mean over shells 1..N/2. half_res_masked: the gold-standard (masked, phase-
    randomisation corrected) half-map FSC at 0.143. overestimation_shells: how many Fourier
    shells half_res_masked claims beyond gt_res_05 (> 0: the half-maps claim more than the
    truth supports). gt_fsc_at_claim: fsc_at_claim(), the FSC to the truth at the half-maps'
    claimed shell (0.5 if honest). fsc_excess_mean / fsc_excess_max: fsc_excess() of
    validate_maps (the half-map FSC minus the one the FSC to the truth supports, over the whole
    curve). fsc_to_truth: the masked curve itself. ang_err_median / ang_err_p90:
    symmetry-aware angular errors (deg).
    """
    v = validate_maps(half1, half2, pixel_size, mask=mask, ground_truth=ground_truth,
                      repeats=1)
    box = v['box']
    gt = v['curves']['gt_masked']
    half = v['curves']['half_corrected']
    r05, r0143, rh = gt['resolution']['0.5'], gt['resolution']['0.143'], half['resolution']['0.143']
    out = dict(gt_res_05=r05['limit_A'], gt_res_0143=r0143['limit_A'],
               gt_res_05_crossed=r05['crossed'], gt_res_0143_crossed=r0143['crossed'],
               gt_fsc_mean=mean_fsc(gt['fsc'], box),
               half_res_masked=rh['limit_A'], half_res_masked_crossed=rh['crossed'],
               overestimation_shells=int(rh['shell'] - r05['shell']),
               overestimated=bool(v['overestimation']['overestimated']),
               gt_fsc_at_claim=v['overestimation']['checks'][0]['truth_fsc_at_claim'],
               fsc_to_truth=gt['fsc'])
    out.update(fsc_excess_mean=v['fsc_excess']['mean'], fsc_excess_max=v['fsc_excess']['max'])
    if R_true is not None and R_est is not None:
        from .poses import pose_errors
        pe = pose_errors(R_true, R_est, symmetry)
        out.update(ang_err_median=pe['angular']['p50'], ang_err_p90=pe['angular']['p90'])
    return out
