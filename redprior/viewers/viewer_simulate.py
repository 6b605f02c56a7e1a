"""Views of a 'simulate particles' run: particle gallery, map slices and SNR.

Each view returns [EmPlotter] (matplotlib), so it shows in the GUI and can be saved headless
with plotter.savefig(path) (no display needed; pyworkflow's Plotter defaults to Agg).
"""
import logging
import os

import numpy as np

import pyworkflow.protocol.params as params
from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO, ProtocolViewer
from pwem.viewers import EmPlotter

from redprior import constants as C
from redprior.viewers.common import savePlotters
from redprior.protocols import ProtRedPriorSimulate

logger = logging.getLogger(__name__)

GALLERY_SIZE = 16          # 4 x 4 particles
SNR_SPECTRUM_PARTICLES = 200


class RedPriorSimulateViewer(ProtocolViewer):
    """Gallery of the first particles, central slices of the ground truth and initial
    model, and the measured SNR with its spectral distribution."""
    _label = 'viewer simulate particles'
    _targets = [ProtRedPriorSimulate]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    def _defineParams(self, form):
        form.addSection(label='Visualization')
        form.addParam('displayGallery', params.LabelParam,
                      label='Particle gallery (first %d)' % GALLERY_SIZE)
        form.addParam('displaySlices', params.LabelParam,
                      label='Central slices: ground truth and initial model')
        form.addParam('displaySnr', params.LabelParam, label='Signal-to-noise ratio')

    def _getVisualizeDict(self):
        return {'displayGallery': self._showGallery,
                'displaySlices': self._showSlices,
                'displaySnr': self._showSnr}

    # ------------------------------------------------------------------ files
    def _extra(self, *names):
        return self.protocol._getExtraPath(*names)

    def _info(self):
        return self.protocol.getResults()

    def _stackPath(self):
        return self._extra(C.SIM_PARTICLES_NAME + '.mrcs')

    def _readImages(self, count):
        import mrcfile
        # mmap: only the first images of a possibly large stack are read
        with mrcfile.mmap(self._stackPath(), mode='r', permissive=True) as mrc:
            data = mrc.data
            if data.ndim == 2:
                data = data[None]
            return np.array(data[:count], dtype=np.float32)

    def _readMap(self, name):
        from redprior.core.io import mrc as mrcio
        return mrcio.read_map(self._extra(name))[0]

    def _missing(self, path):
        if not os.path.exists(path):
            self._error('%s does not exist: has the protocol finished?' % path)
            return True
        return False

    def _error(self, msg):
        # In the GUI showError opens a dialog; headless it is only logged.
        if getattr(self, 'formWindow', None) is not None:
            self.showError(msg)
        else:
            logger.warning(msg)

    # ------------------------------------------------------------------ views
    def _showGallery(self, paramName=None):
        if self._missing(self._stackPath()):
            return []
        images = self._readImages(GALLERY_SIZE)
        star = self._starAngles(len(images))
        side = int(np.ceil(np.sqrt(len(images))))
        what = ' (true rot, tilt, psi in °)' if star is not None else ''
        plotter = EmPlotter(x=side, y=side, figsize=(8, 8),
                            mainTitle='First %d of the simulated particles%s' % (len(images), what),
                            windowTitle='Particle gallery')
        for i, img in enumerate(images):
            title = '#%d' % (i + 1)
            if star is not None:
                title += ' (%.0f, %.0f, %.0f)' % tuple(star[i])
            ax = plotter.createSubPlot(title, None, None)
            ax.imshow(img, cmap='gray', origin='lower')
            ax.axis('off')
        return [plotter]

    def _starAngles(self, count):
        """True (rot, tilt, psi) of the first particles, None if unreadable."""
        try:
            from redprior.core.io import star_particles as particles_star
            parts = particles_star.read_particles(self._extra(C.SIM_PARTICLES_NAME + '.star'))
            return np.stack([parts['rot'], parts['tilt'], parts['psi']], axis=1)[:count]
        except Exception:
            return None

    def _showSlices(self, paramName=None):
        names = [(C.SIM_GROUND_TRUTH, 'Ground truth'), (C.SIM_INITIAL_MODEL, 'Initial model')]
        if any(self._missing(self._extra(n)) for n, _ in names):
            return []
        info = self._info()
        plotter = EmPlotter(x=2, y=3, figsize=(9, 6),
                            mainTitle='Central slices (%s A/px)' % info.get('pixel_size', '?'),
                            windowTitle='Map slices')
        for name, label in names:
            vol = self._readMap(name)
            c = vol.shape[0] // 2
            # arrays are (z, y, x)
            for plane, cut in (('XY', vol[c]), ('XZ', vol[:, c, :]), ('YZ', vol[:, :, c])):
                ax = plotter.createSubPlot('%s %s' % (label, plane), None, None)
                ax.imshow(cut, cmap='gray', origin='lower')
                ax.axis('off')
        return [plotter]

    def _showSnr(self, paramName=None):
        info = self._info()
        if 'snr_measured' not in info or self._missing(self._stackPath()):
            if 'snr_measured' not in info:
                self._error('No simulation.json with the measured SNR yet.')
            return []
        plotter = EmPlotter(x=1, y=2, figsize=(10, 4.5), mainTitle='Signal-to-noise ratio',
                            windowTitle='SNR')
        ax = plotter.createSubPlot('Simulation', None, None)
        req = info.get('snr_requested')
        rows = [('particles', '%d' % info['particles']),
                ('box, pixel', '%d px, %g A' % (info['box'], info['pixel_size'])),
                ('SNR requested', '%g' % req if req is not None else '- (scale %g)'
                 % info.get('scale')),
                ('SNR measured', '%.4g' % info['snr_measured']),
                ('noise sigma', '%.4g' % info['noise_sigma']),
                ('CTF', 'defocus %g-%g A' % (info['ctf']['defocus_min_A'],
                                             info['ctf']['defocus_max_A'])
                 if info.get('ctf') else 'none')]
        table = ax.table(cellText=[[k, v] for k, v in rows], loc='center', cellLoc='left')
        table.scale(1, 1.6)
        ax.axis('off')

        freq, ssnr = self.spectralSnr(info)
        ax2 = plotter.createSubPlot('Spectral SNR (first %d particles)'
                                    % min(SNR_SPECTRUM_PARTICLES, info['particles']),
                                    'spatial frequency (1/Å)', 'SNR per shell')
        # shells where the estimate is <= 0 (noise dominates the estimate) are left blank
        ax2.semilogy(freq, np.where(ssnr > 0, ssnr, np.nan),
                     label='signal/noise power per shell')
        ax2.axhline(info['snr_measured'], ls='--', color='k',
                    label='measured SNR (all frequencies) %.3g' % info['snr_measured'])
        ax2.legend(fontsize=8)
        return [plotter]

    def spectralSnr(self, info):
        """Radially averaged (image power - noise power) / noise power per Fourier shell.

        The noise is white with known sigma, so its power is box^2 * sigma^2 per coefficient
        of the unnormalised FFT; averaged over all shells this matches the measured SNR.
        """
        images = self._readImages(SNR_SPECTRUM_PARTICLES).astype(np.float64)
        box = images.shape[-1]
        images -= images.mean(axis=(1, 2), keepdims=True)
        power = np.mean(np.abs(np.fft.fftshift(np.fft.fft2(images), axes=(1, 2))) ** 2, axis=0)
        y, x = np.indices((box, box)) - box // 2
        shell = np.rint(np.hypot(x, y)).astype(int)
        nshell = box // 2
        inside = shell < nshell
        radial = (np.bincount(shell[inside], power[inside], nshell)
                  / np.maximum(np.bincount(shell[inside], minlength=nshell), 1))
        noise = box * box * float(info['noise_sigma']) ** 2
        freq = np.arange(nshell) / (box * float(info['pixel_size']))
        return freq[1:], (radial[1:] - noise) / noise

    # ------------------------------------------------------------------ headless
    def saveFigures(self, folder, dpi=100):
        """Write gallery.png, slices.png and snr.png into folder; return their paths."""
        return savePlotters(folder, (('gallery', self._showGallery), ('slices', self._showSlices),
                                     ('snr', self._showSnr)), dpi)
