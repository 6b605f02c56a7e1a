"""Views of a 'compare engines' run: cross-FSC heat map and curves, angle and shift
difference histograms.

Each view returns [EmPlotter] (matplotlib), so it shows in the GUI and can be saved headless
with plotter.savefig(path). The drawing itself is core.validation.consensus_report.draw_figure,
shared with the run's HTML report.
"""
import logging
import os

import pyworkflow.protocol.params as params
from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO, ProtocolViewer
from pwem.viewers import EmPlotter

from redprior.protocols import ProtRedPriorConsensus

logger = logging.getLogger(__name__)


class RedPriorConsensusViewer(ProtocolViewer):
    """Cross-FSC of the aligned maps and per-particle angle / shift differences."""
    _label = 'viewer compare engines'
    _targets = [ProtRedPriorConsensus]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    # key of the form -> name of the figure in core.validation.consensus_report.FIGURES
    VIEWS = {'displayCrossFsc': 'cross_fsc', 'displayFscCurves': 'fsc_curves',
             'displayAngles': 'angles', 'displayShifts': 'shifts'}

    def _defineParams(self, form):
        form.addSection(label='Visualization')
        form.addParam('displayCrossFsc', params.LabelParam,
                      label='Cross-FSC resolution matrix (heat map)')
        form.addParam('displayFscCurves', params.LabelParam, label='Cross-FSC curves')
        form.addParam('displayAngles', params.LabelParam,
                      label='Angle differences per pair of engines')
        form.addParam('displayShifts', params.LabelParam,
                      label='Shift differences per pair of engines')

    def _getVisualizeDict(self):
        return {key: (lambda paramName=None, name=name: self._show(name))
                for key, name in self.VIEWS.items()}

    def _load(self):
        from redprior.core.validation import consensus_results
        folder = self.protocol._getExtraPath()
        if not os.path.exists(os.path.join(folder, consensus_results.RESULT_JSON)):
            self._error('%s does not exist: has the protocol finished?'
                        % os.path.join(folder, consensus_results.RESULT_JSON))
            return None, None
        return consensus_results.load_result(folder)

    def _error(self, msg):
        # In the GUI showError opens a dialog; headless it is only logged.
        if getattr(self, 'formWindow', None) is not None:
            self.showError(msg)
        else:
            logger.warning(msg)

    def _show(self, name):
        from redprior.core.validation import consensus_report
        data, arrays = self._load()
        if data is None:
            return []
        title = dict(consensus_report.FIGURES)[name]
        plotter = EmPlotter(x=1, y=1, figsize=(7, 5), windowTitle=title)
        fig = plotter.getFigure()
        fig.clf()      # EmPlotter starts with a grid of subplots; draw_figure makes its own
        consensus_report.draw_figure(fig, name, data, arrays)
        return [plotter]

    # ------------------------------------------------------------------ headless
    def saveFigures(self, folder, dpi=100):
        """Write cross_fsc.png, fsc_curves.png, angles.png and shifts.png; return the paths."""
        os.makedirs(folder, exist_ok=True)
        paths = []
        for name in self.VIEWS.values():
            for plotter in self._show(name):
                path = os.path.join(folder, name + '.png')
                plotter.savefig(path, dpi=dpi)
                plotter.close()
                paths.append(path)
        return paths
