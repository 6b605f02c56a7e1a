"""Views of the denoiser's training: training pairs, loss curves and the single-pass curve.

* 'training maps' / TrainingPairs: nominal resolutions of the pairs per mode and central
  slices of a few pairs (noisy map x~ next to its FSC-filtered target);
* 'train denoiser' / DenoiserModel: train and validation loss per epoch, the single-pass
  curve (L1/L2 error ratio of one denoiser pass against nominal resolution, Kimanius et al.
  2021 Fig. 1C) with the suggested CW-RED thresholds, and the per-shell lambda table.
Figures are plain matplotlib, so they are saved without a display (`saveFigures(folder)`).
"""
import math
import os

import numpy as np
import pyworkflow.protocol.params as params
from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO, ProtocolViewer, Viewer

from redprior.viewers.figure_view import FigureView
from redprior.objects import DenoiserModel, TrainingPairs
from redprior.protocols.protocol_train_denoiser import ProtRedPriorTrainDenoiser
from redprior.protocols.protocol_training_maps import ProtRedPriorTrainingMaps


def _subplots(*args, **kwargs):
    import matplotlib.pyplot as plt
    return plt.subplots(*args, **kwargs)


def _message(ax, text):
    ax.text(0.5, 0.5, text, ha='center', va='center', wrap=True, fontsize=9,
            transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


# ------------------------------------------------------------------------------ figures
def plotLossCurves(history, title='loss per epoch'):
    """Train and validation L2 loss (standardised maps) per epoch."""
    fig, ax = _subplots(figsize=(6.5, 4))
    epochs = (history or {}).get('epochs', [])
    if not epochs:
        _message(ax, 'no training history')
        return fig
    e = [r['epoch'] for r in epochs]
    ax.plot(e, [r['train_loss'] for r in epochs], 'o-', label='train')
    val = [(r['epoch'], r['val_loss']) for r in epochs if r.get('val_loss') is not None]
    if val:
        ax.plot(*zip(*val), 's-', label='validation (%s)'
                % ', '.join(history.get('structures_val', [])[:3]))
    ax.set_xlabel('epoch')
    ax.set_ylabel('L2 loss (standardised maps)')
    if all(r['train_loss'] > 0 for r in epochs):
        ax.set_yscale('log')
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plotSinglePass(meta, title='single-pass curve'):
    """L1 and L2 ratios ||f(x~) - gt|| / ||x~ - gt|| per resolution bin with the thresholds."""
    fig, ax = _subplots(figsize=(6.5, 4))
    sp = (meta or {}).get('single_pass')
    if not sp:
        _message(ax, 'no single-pass curve:\n%s' % (meta or {}).get('threshold_reason', ''))
        return fig
    d = np.array(sp['centres'], dtype=float)
    for key, style in (('ratio_l1', 'o-'), ('ratio_l2', 's-')):
        r = np.array([np.nan if v is None else v for v in sp[key]], dtype=float)
        ok = np.isfinite(r)
        ax.plot(d[ok], r[ok], style, label=key.replace('ratio_', '').upper() + ' ratio')
    ax.axhline(1.0, color='grey', lw=0.8)
    low, high = meta.get('cw_low'), meta.get('cw_high')
    if low is not None and high is not None:
        ax.axvline(low, color='tab:red', ls='--', lw=1, label='lambda 0 worse than %.1f A' % low)
        ax.axvline(high, color='tab:green', ls='--', lw=1,
                   label='lambda 1 better than %.1f A' % high)
    else:
        ax.text(0.02, 0.02, 'no thresholds: %s' % meta.get('threshold_reason', ''),
                transform=ax.transAxes, fontsize=7, wrap=True)
    ax.set_xscale('log')
    _plainLogAxis(ax.xaxis)
    ax.invert_xaxis()  # better resolution to the right
    ax.set_xlabel('nominal resolution of x~ (Å)')
    ax.set_ylabel('error ratio, denoised / noisy')
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plotShellLambda(meta, title='per-shell lambda (CW-RED per shell)'):
    """The per-shell lambda table: one row per resolution bin with validation maps."""
    fig, ax = _subplots(figsize=(6.5, 4))
    table = (meta or {}).get('per_shell_lambda')
    if not table:
        _message(ax, 'no per-shell lambda table (no validation structures)')
        return fig
    freq = np.array(table['frequency'], dtype=float)
    import matplotlib
    cmap = matplotlib.colormaps['viridis']
    rows = [(c, row) for c, row in zip(table['centres'], table['lambda'])
            if row and all(v is not None for v in row)]
    for i, (c, row) in enumerate(rows):
        ax.plot(freq, row, color=cmap(i / max(1, len(rows) - 1)), label='maps at %.1f A' % c)
    ax.set_xlabel('spatial frequency (1/Å)')
    ax.set_ylabel('lambda')
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(title)
    if rows:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plotPairResolutions(store, title='training pairs'):
    """Histogram of the pairs' nominal resolutions, one colour per mode."""
    fig, ax = _subplots(figsize=(6.5, 4))
    by_mode = {}
    for e in store.entries:
        if math.isfinite(e['resolution']):
            by_mode.setdefault(e.get('mode') or '?', []).append(e['resolution'])
    if not by_mode:
        _message(ax, 'no pairs with a finite resolution')
        return fig
    allres = [r for v in by_mode.values() for r in v]
    bins = np.geomspace(min(allres) * 0.95, max(allres) * 1.05, 15)
    ax.hist(list(by_mode.values()), bins=bins, stacked=True, label=list(by_mode))
    ax.set_xscale('log')
    _plainLogAxis(ax.xaxis)
    ax.set_xlabel('nominal resolution (Å)')
    ax.set_ylabel('pairs')
    ax.set_title('%s: %d pairs, %d structures' % (title, len(store), len(store.structures())))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plotPairExamples(store, count=3, title='noisy map and target (central z slices)'):
    """Central slices of `count` pairs spread over the resolution range: x~ above, target below."""
    count = max(1, min(count, len(store)))
    fig, axes = _subplots(2, count, figsize=(2.6 * count, 5.4), squeeze=False)
    if len(store) == 0:
        _message(axes[0, 0], 'no pairs')
        return fig
    order = np.argsort(store.resolutions())
    picks = order[np.linspace(0, len(order) - 1, count).round().astype(int)]
    for col, i in enumerate(picks):
        p = store.load(int(i))
        n = p['x'].shape[0] // 2
        for row, (key, name) in enumerate((('x', 'x~'), ('target', 'target'))):
            ax = axes[row, col]
            ax.imshow(p[key][n], cmap='gray', origin='lower')
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title('%s, %s, %.1f A' % (name, p['mode'], p['resolution']), fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _plainLogAxis(axis):
    # '16' rather than matplotlib's '1.6 x 10^1' on a log axis of resolutions
    from matplotlib.ticker import FormatStrFormatter
    axis.set_major_formatter(FormatStrFormatter('%g'))
    axis.set_minor_formatter(FormatStrFormatter('%g'))


def _save(figures, folder):
    import matplotlib.pyplot as plt
    os.makedirs(folder, exist_ok=True)
    out = []
    for name, fig in figures:
        path = os.path.join(folder, name + '.png')
        fig.savefig(path, dpi=90)
        plt.close(fig)
        out.append(path)
    return out




def _readJson(path):
    from redprior.core.io.jsonfile import read_json
    return read_json(path)


# ------------------------------------------------------------------------------ viewers
class RedPriorTrainingMapsViewer(ProtocolViewer):
    """Resolutions and examples of the pairs made by 'training maps'."""
    _label = 'viewer training maps'
    _targets = [ProtRedPriorTrainingMaps]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    def _defineParams(self, form):
        form.addSection(label='Visualization')
        form.addParam('showResolutions', params.LabelParam, label='Resolutions of the pairs')
        form.addParam('showExamples', params.LabelParam, label='Example pairs (central slices)')

    def _getVisualizeDict(self):
        return {'showResolutions': lambda p: [FigureView(self.plotResolutions())],
                'showExamples': lambda p: [FigureView(self.plotExamples())]}

    def _store(self):
        return self.protocol.outputPairs.getStore()

    def plotResolutions(self):
        return plotPairResolutions(self._store(), self.protocol.getObjLabel())

    def plotExamples(self):
        return plotPairExamples(self._store())

    def saveFigures(self, folder):
        return _save([('pair_resolutions', self.plotResolutions()),
                      ('pair_examples', self.plotExamples())], folder)


class RedPriorTrainDenoiserViewer(ProtocolViewer):
    """Loss curves, single-pass curve and per-shell lambda of a 'train denoiser' run."""
    _label = 'viewer train denoiser'
    _targets = [ProtRedPriorTrainDenoiser]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    def _defineParams(self, form):
        form.addSection(label='Visualization')
        form.addParam('showLoss', params.LabelParam, label='Loss per epoch (train, validation)')
        form.addParam('showSinglePass', params.LabelParam,
                      label='Single-pass curve and suggested CW-RED thresholds')
        form.addParam('showShellLambda', params.LabelParam, label='Per-shell lambda table')

    def _getVisualizeDict(self):
        return {'showLoss': lambda p: [FigureView(self.plotLoss())],
                'showSinglePass': lambda p: [FigureView(self.plotSinglePass())],
                'showShellLambda': lambda p: [FigureView(self.plotShellLambda())]}

    def _meta(self):
        from redprior.core.denoiser.model import metadata_path
        return _readJson(metadata_path(self.protocol.getModelPath()))

    def plotLoss(self):
        return plotLossCurves(self.protocol.getHistory(), self.protocol.getObjLabel())

    def plotSinglePass(self):
        return plotSinglePass(self._meta())

    def plotShellLambda(self):
        return plotShellLambda(self._meta())

    def saveFigures(self, folder):
        return _save([('loss', self.plotLoss()), ('single_pass', self.plotSinglePass()),
                      ('per_shell_lambda', self.plotShellLambda())], folder)


class RedPriorTrainingObjectsViewer(Viewer):
    """The same figures for a DenoiserModel or TrainingPairs object (e.g. from the browser)."""
    _label = 'viewer denoiser training'
    _targets = [DenoiserModel, TrainingPairs]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    @staticmethod
    def figures(obj):
        """[(name, Figure)] for one object."""
        if isinstance(obj, DenoiserModel):
            meta = obj.getMetadata()
            return [('loss', plotLossCurves(obj.getHistory(), os.path.basename(
                        obj.getFileName() or ''))),
                    ('single_pass', plotSinglePass(meta)),
                    ('per_shell_lambda', plotShellLambda(meta))]
        store = obj.getStore()
        return [('pair_resolutions', plotPairResolutions(store)),
                ('pair_examples', plotPairExamples(store))]

    def _visualize(self, obj, **kwargs):
        return [FigureView(fig) for _, fig in self.figures(obj)]

    def saveFigures(self, obj, folder):
        return _save(self.figures(obj), folder)
