"""Validation report: PNG figures, one HTML page and a PDF from core.validation.metrics results.

Matplotlib is used through Figure objects with the Agg canvas (no pyplot state, no display).
The plotting functions take axes, so the Scipion viewer draws the same figures.
Results may be the dicts of core.validation.metrics or the same read back from validation.json.
"""
import datetime
import html
import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from redprior.core.validation.metrics import THRESHOLDS

# (colour, line style, width) per curve key of core.validation.metrics
CURVE_STYLES = {
    'half_unmasked': ('tab:green', '-', 1.0),
    'half_masked': ('tab:blue', '-', 1.0),
    'half_random': ('tab:red', '-', 0.8),
    'half_corrected': ('black', '-', 2.0),
    'gt_masked': ('tab:purple', '-', 2.0),
    'gt_unmasked': ('tab:purple', ':', 1.2),
    'gt_expected': ('grey', '--', 1.2),
    'unreg_unmasked': ('tab:orange', ':', 1.2),
    'unreg_corrected': ('tab:orange', '-', 1.6),
}
FIGURES = {'fsc': 'fsc.png', 'poses': 'pose_errors.png'}


def _res_text(curve, threshold):
    return curve['resolution']['%g' % threshold]['text']


def plot_fscs(ax, results, keys=None):
    """All FSC curves against spatial frequency with the 0.143 and 0.5 lines."""
    freq = np.asarray(results['frequencies'], dtype=float)
    curves = results['curves']
    for key in keys or list(curves):
        c = curves[key]
        colour, ls, lw = CURVE_STYLES.get(key, (None, '-', 1.0))
        main = c.get('main_threshold', 0.143)
        # the phase-randomised curve is a correction term: a resolution of it means nothing
        label = (c['label'] if key == 'half_random'
                 else '%s: %s @%g' % (c['label'], _res_text(c, main), main))
        ax.plot(freq[1:], np.asarray(c['fsc'], dtype=float)[1:], color=colour, ls=ls, lw=lw,
                label=label)
    for t, ls in zip(THRESHOLDS, (':', '-.')):
        ax.axhline(t, color='k', ls=ls, lw=0.8)
        # at the left, where every curve is still near 1: nothing covers it
        ax.text(0.01 * freq[-1], t + 0.01, 'FSC = %g' % t, ha='left', va='bottom', fontsize=7)
    ax.axhline(0.0, color='k', lw=0.5)
    ax.set_xlim(0, freq[-1])
    ax.set_ylim(-0.1, 1.05)
    ax.set_xlabel('spatial frequency (1/Å)')
    ax.set_ylabel('Fourier shell correlation')
    # resolution in A along the top, at the bottom axis' ticks (0 has no resolution)
    top = ax.twiny()
    top.set_xlim(ax.get_xlim())
    ticks = [t for t in ax.get_xticks() if 0 < t <= freq[-1]]
    top.set_xticks(ticks)
    top.set_xticklabels(['%.3g' % (1.0 / t) for t in ticks])
    top.set_xlabel('resolution (Å)')
    ax.grid(alpha=0.3)
    # below the axes: inside them the legend hid curves (the phase-randomised one)
    ax.legend(fontsize=7, loc='upper center', bbox_to_anchor=(0.5, -0.12), ncol=1)


def plot_angular_errors(ax, poses, bins=40):
    """Histogram of per-particle angular errors with the percentile lines."""
    err = np.asarray(poses['angular_errors'], dtype=float)
    ax.hist(err, bins=bins, color='tab:blue', alpha=0.8)
    _percentile_lines(ax, poses['angular'])
    ax.set_xlabel('angular error (deg, %s)' % poses.get('symmetry', 'C1'))
    ax.set_ylabel('particles')
    ax.legend(fontsize=7)


def plot_shift_errors(ax, poses, bins=40):
    err = np.asarray(poses['shift_errors'], dtype=float)
    ax.hist(err, bins=bins, color='tab:green', alpha=0.8)
    _percentile_lines(ax, poses['shift'])
    ax.set_xlabel('shift error (Å)')
    ax.set_ylabel('particles')
    ax.legend(fontsize=7)


def _percentile_lines(ax, stats):
    for key, ls in (('p50', '-'), ('p90', '--')):
        if stats.get(key) is not None:
            ax.axvline(stats[key], color='k', ls=ls, lw=1,
                       label='%s = %.3g' % (key.replace('p', '') + 'th pct', stats[key]))


def fsc_figure(results):
    fig = Figure(figsize=(9, 8.5))
    FigureCanvasAgg(fig)
    plot_fscs(fig.add_subplot(1, 1, 1), results)
    fig.tight_layout()
    return fig


def pose_figure(poses):
    has_shift = 'shift_errors' in poses
    fig = Figure(figsize=(10 if has_shift else 6, 4.5))
    FigureCanvasAgg(fig)
    plot_angular_errors(fig.add_subplot(1, 2 if has_shift else 1, 1), poses)
    if has_shift:
        plot_shift_errors(fig.add_subplot(1, 2, 2), poses)
    fig.suptitle('Pose errors of %d particles' % poses['n'])
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------
# Tables shared by the HTML page, the PDF and the protocol summary
# ---------------------------------------------------------------------------------------
def resolution_rows(results):
    """[(label, text @0.143, text @0.5)] for every curve ('-' for the phase-randomised one,
    a correction term whose crossing means nothing)."""
    return [(c['label'], '-', '-') if key == 'half_random' else
            (c['label'], _res_text(c, 0.143), _res_text(c, 0.5))
            for key, c in results['curves'].items()]


def pose_rows(poses):
    rows = []
    for name, key, unit in (('angular error', 'angular', 'deg'), ('shift error', 'shift', 'A')):
        stats = poses.get(key)
        if not stats:
            continue
        rows.append((name + ' (%s)' % unit,) + tuple(
            '-' if stats.get(k) is None else '%.3g' % stats[k]
            for k in ('p50', 'p75', 'p90', 'p95', 'mean', 'max')))
    return rows


def pose_notes(poses):
    """The hand check and a near-symmetric subset, in words (empty list if neither applies)."""
    notes = [hand_text(poses)] if hand_text(poses) else []
    if (poses.get('pseudo_symmetry') or {}).get('text'):
        notes.append('Near-symmetry: ' + poses['pseudo_symmetry']['text'])
    if (poses.get('shift_bias') or {}).get('text'):
        notes.append('Origins: ' + poses['shift_bias']['text'])
    return notes


def hand_text(poses):
    if 'hand' not in poses:
        return ''
    return ('Hand: %s (median error after global alignment: %.3g deg with this hand, %.3g deg '
            'with the mirror image)' % ('same as the reference' if poses['hand'] == 'same'
                                        else 'MIRRORED: the map has the wrong hand',
                                        poses['median_same_hand'], poses['median_mirror_hand']))


def summary_lines(results):
    """Short text lines (resolutions, verdict) for logs and the protocol summary."""
    c = results['curves']
    lines = ['Gold-standard (half-maps, masked, corrected) FSC 0.143: %s'
             % _res_text(c['half_corrected'], 0.143)]
    if 'gt_masked' in c:
        lines.append('Map vs ground truth (masked) FSC 0.5: %s; FSC 0.143: %s'
                     % (_res_text(c['gt_masked'], 0.5), _res_text(c['gt_masked'], 0.143)))
    if 'unreg_corrected' in c:
        lines.append('Unregularised half-maps FSC 0.143: %s'
                     % _res_text(c['unreg_corrected'], 0.143))
    lines.append('Overestimation: %s' % results['overestimation']['verdict'])
    poses = results.get('poses')
    if poses and poses.get('angular'):
        a = poses['angular']
        lines.append('Angular error (deg) over %d particles: median %.3g, 90th pct %.3g'
                     % (a['n'], a['p50'], a['p90']))
        if (poses.get('pseudo_symmetry') or {}).get('text'):
            lines.append('Near-symmetry: ' + poses['pseudo_symmetry']['text'])
    return lines


# ---------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------
def write_figures(results, folder, dpi=110):
    """fsc.png (and pose_errors.png when poses are present); returns {name: path}."""
    os.makedirs(folder, exist_ok=True)
    paths = {}
    figs = [('fsc', fsc_figure(results))]
    if results.get('poses'):
        figs.append(('poses', pose_figure(results['poses'])))
    for name, fig in figs:
        path = os.path.join(folder, FIGURES[name])
        fig.savefig(path, dpi=dpi)
        paths[name] = path
    return paths


def _table(header, rows):
    esc = html.escape
    out = ['<table><tr>%s</tr>' % ''.join('<th>%s</th>' % esc(h) for h in header)]
    out += ['<tr>%s</tr>' % ''.join('<td>%s</td>' % esc(str(v)) for v in row) for row in rows]
    return '\n'.join(out + ['</table>'])


def write_html(results, folder, title, figures, info=None):
    esc = html.escape
    over = results['overestimation']
    flag = over.get('overestimated')
    colour = {True: '#b00', False: '#070', None: '#555'}[flag]
    parts = ['<!DOCTYPE html><html><head><meta charset="utf-8"><title>%s</title>' % esc(title),
             '<style>body{font-family:sans-serif;max-width:1000px;margin:auto}'
             'table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #999;'
             'padding:3px 8px;text-align:left}img{max-width:100%}</style></head><body>',
             '<h1>%s</h1>' % esc(title),
             '<p>Written %s. Box %d px, %.4g A/px (Nyquist %.3g A).</p>'
             % (datetime.datetime.now().strftime('%Y-%m-%d %H:%M'), results['box'],
                results['pixel_size'], results['nyquist_A'])]
    if info:
        parts.append(_table(['input', 'value'], sorted(info.items())))
    parts.append('<h2>Resolution</h2>')
    parts.append(_table(['curve', 'FSC = 0.143', 'FSC = 0.5'], resolution_rows(results)))
    mask = results['mask']
    parts.append('<p>Mask: %s (mean value %.3f). Phases randomised from %s.</p>'
                 % (esc(mask['source']), mask['fraction'],
                    '%.2f A (shell %d)' % (results['randomise_from_A'],
                                           results['randomise_shell'])
                    if results.get('randomise_from_A') else 'nowhere'))
    for note in results.get('notes', []):
        parts.append('<p><i>%s</i></p>' % esc(note))
    parts.append('<h2>Overestimation check</h2><p style="color:%s"><b>%s</b></p><p>%s</p>'
                 % (colour, esc(over['verdict']), esc(over['rule'])))
    if 'fsc' in figures:
        parts.append('<img src="%s" alt="FSC curves">' % esc(os.path.basename(figures['fsc'])))
    poses = results.get('poses')
    if poses:
        parts.append('<h2>Pose errors</h2><p>%d particles in common, symmetry %s%s.</p>'
                     % (poses['n'], esc(poses['symmetry']),
                        ', after global frame alignment (%.2f deg)' % poses['G_angle']
                        if poses.get('aligned') else ''))
        parts.append(_table(['error', 'median', '75th', '90th', '95th', 'mean', 'max'],
                            pose_rows(poses)))
        for note in pose_notes(poses):
            parts.append('<p>%s</p>' % esc(note))
        if 'poses' in figures:
            parts.append('<img src="%s" alt="pose errors">'
                         % esc(os.path.basename(figures['poses'])))
    parts.append('<p>Numbers: validation.json. Figures: PNG files next to this page; all of '
                 'it in report.pdf.</p></body></html>')
    path = os.path.join(folder, 'report.html')
    with open(path, 'w', encoding='utf-8') as fh:
        fh.write('\n'.join(parts))
    return path


def _text_page(title, lines):
    fig = Figure(figsize=(8.27, 11.69))
    FigureCanvasAgg(fig)
    fig.text(0.06, 0.96, title, fontsize=14, weight='bold', va='top')
    y = 0.92
    for line in lines:
        # long lines are wrapped by hand: PDF text does not wrap
        for chunk in _wrap(line, 95):
            fig.text(0.06, y, chunk, fontsize=8.5, family='monospace', va='top')
            y -= 0.018
        y -= 0.004
    return fig


def _wrap(text, width):
    import textwrap
    return textwrap.wrap(text, width) or ['']


def write_pdf(results, folder, title, info=None):
    lines = []
    if info:
        lines += ['%s: %s' % kv for kv in sorted(info.items())] + ['']
    lines.append('Box %d px, %.4g A/px (Nyquist %.3g A); mask %s (mean %.3f)'
                 % (results['box'], results['pixel_size'], results['nyquist_A'],
                    results['mask']['source'], results['mask']['fraction']))
    lines += ['', 'Resolutions (FSC = 0.143 | FSC = 0.5):']
    # one curve per line, its resolutions on the next: the texts are too long for columns
    for label, r0143, r05 in resolution_rows(results):
        lines += [label, '    %s | %s' % (r0143, r05)]
    lines += ['', 'Overestimation: ' + results['overestimation']['verdict'],
              results['overestimation']['rule']]
    lines += results.get('notes', [])
    poses = results.get('poses')
    if poses:
        lines += ['', 'Pose errors (%d particles, symmetry %s): median / 75th / 90th / 95th / '
                      'mean / max' % (poses['n'], poses['symmetry'])]
        lines += ['  %-22s ' % r[0] + ' / '.join(r[1:]) for r in pose_rows(poses)]
        lines += pose_notes(poses)
    path = os.path.join(folder, 'report.pdf')
    with PdfPages(path) as pdf:
        pdf.savefig(_text_page(title, lines))
        pdf.savefig(fsc_figure(results))
        if poses:
            pdf.savefig(pose_figure(poses))
    return path


def write_report(results, folder, title='Resolution and validation report', info=None):
    """Write fsc.png, pose_errors.png (with poses), report.html and report.pdf into folder.

    info: optional {name: value} of inputs shown at the top. Returns {name: path}.
    """
    os.makedirs(folder, exist_ok=True)
    paths = write_figures(results, folder)
    paths['html'] = write_html(results, folder, title, paths, info)
    paths['pdf'] = write_pdf(results, folder, title, info)
    return paths
