"""Viewer of 'CW-RED 3D auto-refine': FSC per iteration, resolution and lambda per iteration,
central slices of the half-maps and the final map. Figures are plain matplotlib, so they can be
saved without a display (`saveFigures(folder)`)."""
import glob
import os
import re

import numpy as np
import pyworkflow.protocol.params as params
from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO, ProtocolViewer

from redprior.protocols.protocol_refine import ProtRedPriorRefine
from redprior.viewers.figure_view import FigureView


def iteration_table(extraPath):
    """[(iteration, resolution A, fsc curve, 1/A axis, resolution text)] from RELION's
    per-iteration half1 models; the resolution is the curve's own 0.143 crossing read by the
    one rule (core.fourier.fsc.read_resolution), as the hook reads it."""
    from emtable import Table

    from redprior.core.fourier.fsc import read_resolution
    rows = []
    for path in sorted(glob.glob(os.path.join(extraPath, 'run*_it[0-9][0-9][0-9]_half1_model.star'))):
        it = int(re.search(r'_it(\d{3})_half1', path).group(1))
        if it == 0:
            continue
        cls = Table(fileName=path, tableName='model_class_1')
        curve = np.array(cls.getColumnValues('rlnGoldStandardFsc'), dtype=float)
        freq = np.array(cls.getColumnValues('rlnResolution'), dtype=float)
        box = 2 * (len(curve) - 1)
        res = read_resolution(curve, box, 1.0 / (box * freq[1]))
        rows.append((it, res.bound_A, curve, freq, res.text))
    return rows


def relion_estimates(extraPath):
    """[(iteration, rlnCurrentResolution)] of RELION's per-iteration half1 models: RELION's
    own running estimate, which it sizes its images by; not the FSC 0.143 crossing."""
    from emtable import Table
    out = []
    for path in sorted(glob.glob(os.path.join(extraPath, 'run*_it[0-9][0-9][0-9]_half1_model.star'))):
        it = int(re.search(r'_it(\d{3})_half1', path).group(1))
        if it:
            general = next(iter(Table(fileName=path, tableName='model_general')))
            out.append((it, float(general.rlnCurrentResolution)))
    return out


class RedPriorRefineViewer(ProtocolViewer):
    _label = 'viewer CW-RED auto-refine'
    _targets = [ProtRedPriorRefine]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    def _defineParams(self, form):
        form.addSection(label='Visualization')
        form.addParam('showFscIterations', params.LabelParam, label='FSC per iteration')
        form.addParam('showHistory', params.LabelParam, label='Resolution and lambda per iteration')
        form.addParam('showSlices', params.LabelParam, label='Central slices of the maps')

    def _getVisualizeDict(self):
        return {'showFscIterations': lambda p: [FigureView(self.plotFscIterations())],
                'showHistory': lambda p: [FigureView(self.plotHistory())],
                'showSlices': lambda p: [FigureView(self.plotSlices())]}

    # -- figures (matplotlib Figure objects)
    def _figure(self, *args, **kwargs):
        import matplotlib.pyplot as plt
        return plt.subplots(*args, **kwargs)

    def plotFscIterations(self):
        fig, ax = self._figure(figsize=(7, 4.5))
        rows = iteration_table(self.protocol._getExtraPath())
        import matplotlib
        cmap = matplotlib.colormaps['viridis']
        for i, (it, res, curve, freq, text) in enumerate(rows):
            ax.plot(freq, curve, color=cmap(i / max(1, len(rows) - 1)), lw=1,
                    label='it %d (0.143: %s)' % (it, text))
        ax.axhline(0.143, color='grey', lw=0.5)
        ax.set_xlabel('spatial frequency (1/Å)')
        ax.set_ylabel('gold-standard FSC')
        ax.set_title(self.protocol.getObjLabel())
        if rows:
            ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        return fig

    def plotHistory(self):
        """Lambda per iteration next to the resolution it was computed from (the hook's
        schedule resolution: RELION's gold-standard FSC of that iteration at 0.143), and
        RELION's own per-iteration estimate (model.star) for comparison."""
        from redprior.core.prior.history import history_rows, read_log, schedule_history
        fig, ax = self._figure(figsize=(7, 4))
        hist = schedule_history(history_rows(read_log(self.protocol.getExreconLog())))
        ax.plot([h[0] for h in hist], [h[1] for h in hist], 'o-', color='tab:blue',
                label='schedule resolution (Å): FSC 0.143 handed to the hook')
        rows = relion_estimates(self.protocol._getExtraPath())
        ax.plot([r[0] for r in rows], [r[1] for r in rows], '--', color='grey', lw=1,
                label="RELION's running estimate (model.star rlnCurrentResolution, Å)")
        ax.set_xlabel('iteration')
        ax.set_ylabel('resolution (Å)')
        ax2 = ax.twinx()
        ax2.step([h[0] for h in hist], [h[2] for h in hist], where='mid', color='tab:red',
                 label='λ')
        ax2.set_ylim(-0.05, 1.05)
        ax2.set_ylabel('λ (computed from the schedule resolution)', color='tab:red')
        ax.legend(fontsize=7, loc='upper right')
        ax.set_title('λ per iteration and the resolution it was computed from')
        fig.tight_layout()
        return fig

    def plotSlices(self):
        from redprior.core.io.mrc import read_map
        vol = self.protocol.outputVolume
        files = [str(f) for f in vol.getHalfMaps(asList=True)] + [vol.getFileName()]
        names = ['half 1', 'half 2', 'final']
        fig, axes = self._figure(3, 3, figsize=(8, 8))
        for row, (name, path) in enumerate(zip(names, files)):
            data, _ = read_map(path)
            n = data.shape[0] // 2
            for col, (sl, axis) in enumerate(((data[n], 'z'), (data[:, n], 'y'), (data[:, :, n], 'x'))):
                ax = axes[row, col]
                ax.imshow(sl, cmap='gray', origin='lower')
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title('%s, central %s' % (name, axis), fontsize=8)
        fig.tight_layout()
        return fig

    def saveFigures(self, folder):
        """Write the three figures as PNGs; returns their paths."""
        os.makedirs(folder, exist_ok=True)
        out = []
        for name, fn in (('fsc_iterations', self.plotFscIterations),
                         ('history', self.plotHistory), ('slices', self.plotSlices)):
            fig = fn()
            path = os.path.join(folder, name + '.png')
            fig.savefig(path, dpi=90)
            out.append(path)
        return out
