"""Wizards of 'CW-RED 3D auto-refine' (and the initial low-pass of 'simulate particles').

* CW-RED thresholds from the chosen denoiser's single-pass curve (its .json metadata);
* mask diameter from the particle's extent in the reference map, capped by the box;
* initial-model low-pass from the pixel size.

Each rule is a plain function (testable without a form); the wizard classes only read the
protocol, fill the form and say what they did.
"""
import math
import os

import numpy as np

from pwem.wizards import EmWizard

from redprior import constants as C
from redprior.convert import volumePath
from redprior.core.prior import schedule
from redprior.protocols import ProtRedPriorRefine, ProtRedPriorSimulate

# Kimanius et al. 2021: lambda 0 for maps worse than 10 A, 1 better than 4.5 A.
PAPER_CW_LOW, PAPER_CW_HIGH = schedule.CW_LOW_DEFAULT, schedule.CW_HIGH_DEFAULT

# Mask rule: the reference low-passed to 15 A and thresholded at 10 % of its maximum (the
# recipe of core.geometry.masks.solvent_mask); the farthest such voxel from the box centre (where
# RELION centres its circular mask) gives the radius.
MASK_LOWPASS_A, MASK_THRESHOLD = 15.0, 0.1
MASK_MARGIN = 0.10          # diameter + 10 %: RELION's soft edge must not eat density
MASK_MARGIN_MIN_PX = 2      # ... and at least 2 px on each side
MASK_MAX_BOX_FRACTION = 0.9  # never wider than 90 % of the box (the protocol's -1 default)

# Initial low-pass rule: 30 A (the paper's and RELION's usual start: no secondary
# structure, so no model bias), but never finer than 4 x Nyquist (8 px) so that
# coarse pixels keep the initial model to its lowest few shells only.
INI_LOWPASS_A = 30.0
INI_LOWPASS_NYQUIST_FACTOR = 4.0


class WizardError(ValueError):
    """The wizard cannot compute a value; the message says why and what to do."""


class NoSuggestion(WizardError):
    """The model is usable but its single-pass curve suggests no CW-RED ramp."""


# ---------------------------------------------------------------------- rules
def denoiserThresholds(modelPath):
    """(cw_low, cw_high, note) suggested by a denoiser's metadata.

    Reads 'cw_low'/'cw_high' (written by 'train denoiser' from its single-pass curve).
    Raises NoSuggestion when the model is fine but its curve suggests no ramp, WizardError
    when the model or its metadata cannot be used.
    """
    from redprior.core.denoiser.model import DenoiserError, metadata_path, read_metadata
    try:
        meta = read_metadata(modelPath)
    except DenoiserError as exc:
        raise WizardError(str(exc))
    if 'cw_low' in meta or 'cw_high' in meta:
        low, high = meta.get('cw_low'), meta.get('cw_high')
    else:
        raise WizardError('%s has no single-pass curve (no suggested thresholds in %s): it '
                          'was saved without the single-pass evaluation.'
                          % (modelPath, metadata_path(modelPath)))
    note = meta.get('threshold_reason') or ''
    if low is None or high is None:
        # e.g. the denoiser does not help even at the finest resolution measured
        raise NoSuggestion('The single-pass curve of %s suggests no thresholds%s.'
                           % (os.path.basename(modelPath), ': %s' % note if note else ''))
    try:
        low, high = float(low), float(high)
    except (TypeError, ValueError):
        raise WizardError('Unreadable suggested thresholds %r / %r in %s.'
                          % (low, high, metadata_path(modelPath)))
    if not (math.isfinite(low) and math.isfinite(high) and 0 < high <= low):
        raise WizardError('Invalid suggested thresholds in %s: low %g A, high %g A (need '
                          '0 < high <= low).' % (metadata_path(modelPath), low, high))
    return low, high, ('' if note == 'measured' else note)



def particleExtent(data, pixel):
    """Largest distance (A) from the box centre of the thresholded, low-passed map."""
    from redprior.core.geometry.masks import solvent_mask
    # no dilation, no soft edge: the bare thresholded region
    binary = solvent_mask(data, pixel, lowpass_A=MASK_LOWPASS_A, threshold=MASK_THRESHOLD,
                          extend_px=0, soft_px=0) > 0.5
    if not binary.any():
        raise WizardError('Nothing in the reference map is above %d %% of its maximum '
                          'after a %g A low-pass.' % (100 * MASK_THRESHOLD, MASK_LOWPASS_A))
    idx = np.argwhere(binary).astype(np.float64)
    centre = np.array(data.shape) // 2
    # + half a voxel: the distance to the far side of the outermost voxel
    return (float(np.sqrt(((idx - centre) ** 2).sum(1)).max()) + 0.5) * pixel


def maskDiameter(data, pixel):
    """(diameter A, info dict) for RELION's --particle_diameter from a reference map."""
    from redprior.core.io.mrc import check_cube
    check_cube(data)
    box = data.shape[0]
    radius = particleExtent(data, pixel)
    wanted = 2 * radius + max(MASK_MARGIN * 2 * radius, 2 * MASK_MARGIN_MIN_PX * pixel)
    cap = MASK_MAX_BOX_FRACTION * box * pixel
    diameter = float(math.ceil(min(wanted, cap)))
    return diameter, dict(radius=radius, wanted=wanted, cap=cap, capped=wanted > cap,
                          box=box, pixel=pixel)


def initialLowpass(pixel):
    """Initial-model low-pass (A): 30 A, coarser when 4 x Nyquist is coarser."""
    if not pixel or pixel <= 0:
        raise WizardError('The pixel size is unknown.')
    return max(INI_LOWPASS_A, INI_LOWPASS_NYQUIST_FACTOR * 2.0 * pixel)


# ---------------------------------------------------------------------- helpers
def _refinePixel(protocol):
    for ptr in (protocol.inputParticles, protocol.referenceVolume):
        obj = ptr.get()
        if obj is not None and obj.getSamplingRate():
            return obj.getSamplingRate()
    return None


def _simulatePixel(protocol):
    if protocol.inputSource.get() == C.SOURCE_VOLUME:
        vol = protocol.inputVolume.get()
        return vol.getSamplingRate() if vol is not None else None
    return protocol.pixelSize.get()


# ---------------------------------------------------------------------- wizards
class RedPriorCwThresholdsWizard(EmWizard):
    """CW-RED 'lambda 0 above' / 'lambda 1 below' from the denoiser's single-pass curve."""
    _targets = [(ProtRedPriorRefine, ['cwLow', 'cwHigh'])]

    def show(self, form, *params):
        prot = form.protocol
        # no model chosen: the refinement uses the shipped default, so its curve applies
        path = prot.getDenoiserPath().strip()
        paper = ("The paper's thresholds were put in the form instead: lambda 0 above %g A, "
                 "1 below %g A (Kimanius et al. 2021)." % (PAPER_CW_LOW, PAPER_CW_HIGH))
        try:
            low, high, note = denoiserThresholds(path)
        except NoSuggestion as exc:  # a usable model without a ramp of its own: not an error
            self._setThresholds(form, PAPER_CW_LOW, PAPER_CW_HIGH)
            form.showInfo('%s\n%s' % (exc, paper))
            return
        except WizardError as exc:
            self._setThresholds(form, PAPER_CW_LOW, PAPER_CW_HIGH)
            form.showError('Cannot suggest CW-RED thresholds: %s\n%s' % (exc, paper))
            return
        self._setThresholds(form, low, high)
        # a note means the metadata's ramp was set otherwise than read from the curve
        source = 'The thresholds stored with' if note else 'From the single-pass curve of'
        msg = ('%s %s: lambda 0 for maps worse than %.2f A, 1 better than %.2f A.'
               % (source, os.path.basename(path), low, high))
        if note:
            msg += '\nHow they were set: %s.' % note
        pixel = _refinePixel(prot)
        if pixel and high < 2 * pixel:
            msg += ('\nWarning: %.2f A is finer than the particles\' Nyquist (%.2f A): '
                    'lambda will not reach 1.' % (high, 2 * pixel))
        form.showInfo(msg)

    @staticmethod
    def _setThresholds(form, low, high):
        form.setVar('cwLow', round(float(low), 2))
        form.setVar('cwHigh', round(float(high), 2))


class RedPriorMaskDiameterWizard(EmWizard):
    """Mask diameter from the particle's extent in the initial 3D reference."""
    _targets = [(ProtRedPriorRefine, ['particleDiameter'])]

    def show(self, form, *params):
        from redprior.core.io.mrc import MapError, read_map
        ref = form.protocol.referenceVolume.get()
        if ref is None:
            form.showError('Choose the initial 3D reference first: the particle\'s extent is '
                           'measured on it.')
            return
        try:
            data, _ = read_map(volumePath(ref))
            pixel = ref.getSamplingRate() or _refinePixel(form.protocol)
            if not pixel:
                raise WizardError('The reference has no pixel size.')
            diameter, info = maskDiameter(data, pixel)
        except (MapError, WizardError) as exc:
            form.showError('Cannot measure the particle: %s' % exc)
            return
        form.setVar('particleDiameter', diameter)
        msg = ('Particle extent in the reference (%g A low-pass, %d %% of the maximum): %.1f A '
               'from the box centre; diameter %.0f A with a %d %% margin.'
               % (MASK_LOWPASS_A, 100 * MASK_THRESHOLD, info['radius'], info['wanted'],
                  100 * MASK_MARGIN))
        if info['capped']:
            msg += ('\nCapped at %d %% of the box (%.0f A): the particle nearly fills the '
                    'box; a larger box would be safer.'
                    % (100 * MASK_MAX_BOX_FRACTION, info['cap']))
        form.showInfo(msg + "\nThe value %g A was written into the mask diameter." % diameter)


class RedPriorInitialLowpassWizard(EmWizard):
    """Initial-model low-pass: 30 A, or 4 x Nyquist when that is coarser."""
    _targets = [(ProtRedPriorRefine, ['iniHigh']),
                (ProtRedPriorSimulate, ['initialLowpass'])]

    def show(self, form, *params):
        prot = form.protocol
        if isinstance(prot, ProtRedPriorSimulate):
            target, pixel = 'initialLowpass', _simulatePixel(prot)
        else:
            target, pixel = 'iniHigh', _refinePixel(prot)
        try:
            value = initialLowpass(pixel)
        except WizardError as exc:
            form.showError('%s Choose the input (particles, reference or volume) first.' % exc)
            return
        form.setVar(target, value)
        form.showInfo('Initial low-pass %g A: %g A (no secondary structure, no model bias), '
                      'or 4 x Nyquist (%g A at %g A/px) when coarser.'
                      % (value, INI_LOWPASS_A, INI_LOWPASS_NYQUIST_FACTOR * 2 * pixel, pixel))
