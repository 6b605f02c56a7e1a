"""SNR <-> intensity scale factor wizard for 'simulate particles'.

Both noise settings describe the same thing for a given map, box, pixel size and CTF:
SNR = scale^2 * (mean per-pixel variance of the clean projections) with unit noise. The
wizard computes the counterpart of the field it is attached to and fills it in, so that
switching 'Noise given by' keeps the same data set.
"""
from pwem.wizards import EmWizard

from redprior.protocols import ProtRedPriorSimulate


def noiseConversion(protocol, fromParam):
    """(target param name, value, message) converting the protocol's current snr or
    scaleFactor (fromParam) into the other one, on the protocol's actual input map."""
    from redprior.core.simulation import particles as simulate
    vol, pixel, _ = protocol.computeGroundTruth()
    ctf = protocol.getCtfSettings()
    where = 'box %d, %g A/px, CTF %s' % (vol.shape[0], pixel, 'on' if ctf else 'off')
    if fromParam == 'snr':
        snr = protocol.snr.get()
        if not snr or snr <= 0:
            raise ValueError('Set an SNR > 0 first.')
        scale = simulate.scale_for_snr(vol, pixel, snr, ctf=ctf)
        return ('scaleFactor', scale, 'SNR %g corresponds to an intensity scale factor of '
                '%.4g with unit noise (%s).' % (snr, scale, where))
    scale = protocol.scaleFactor.get()
    if not scale or scale <= 0:
        raise ValueError('Set a scale factor > 0 first.')
    snr = simulate.snr_for_scale(vol, pixel, scale, ctf=ctf)
    return ('snr', snr, 'Intensity scale factor %g gives an SNR of %.4g (%s).'
            % (scale, snr, where))


class RedPriorNoiseWizard(EmWizard):
    """Convert the SNR into the equivalent intensity scale factor, or back."""
    _targets = [(ProtRedPriorSimulate, ['snr', 'scaleFactor'])]

    def show(self, form, *params):
        fromParam = params[0] if params else 'snr'
        try:
            target, value, message = noiseConversion(form.protocol, fromParam)
        except Exception as exc:  # missing input, model does not fit, ...
            form.showError('Cannot convert the noise setting: %s' % exc)
            return
        form.setVar(target, float('%.6g' % value))
        form.showInfo(message + "\nThe value was written into '%s'." % target)
