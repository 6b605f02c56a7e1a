"""Report of a consensus run: figures (shared with the Scipion viewer), HTML and summary text.

Matplotlib only (Figure objects, no pyplot state: works headless); no Scipion. Everything is
drawn from what core.validation.consensus_results saved (consensus.json and the per-particle
arrays), so the report, the viewer and the protocol's summary show the same numbers.
"""
import os

import numpy as np

from redprior.core.validation.consensus_results import load_result

REPORT_HTML = 'consensus.html'


# ---------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------
def plot_cross_fsc_matrix(ax, data, threshold='0.5'):
    """Heat map of the pairwise map resolution (A) at FSC = threshold ('0.5' or '0.143')."""
    fsc_data = data.get('fsc')
    if not fsc_data:
        ax.text(0.5, 0.5, 'no maps compared', ha='center', va='center')
        ax.axis('off')
        return None
    key = 'res05' if threshold == '0.5' else 'res0143'
    M = np.array([[np.nan if x is None else x for x in row] for row in fsc_data[key]])
    names = fsc_data['names']
    im = ax.imshow(M, cmap='viridis_r', interpolation='nearest')
    ax.set_xticks(range(len(names)))
    ax.set_yticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha='right', fontsize=8)
    ax.set_yticklabels(names, fontsize=8)
    crossed = fsc_data.get('crossed05' if threshold == '0.5' else 'crossed0143')
    for i in range(len(names)):
        for j in range(len(names)):
            text = '-' if not np.isfinite(M[i, j]) else '%.1f' % M[i, j]
            if crossed is not None and np.isfinite(M[i, j]) and not crossed[i][j]:
                text += '*'
            ax.text(j, i, text, ha='center', va='center', color='w', fontsize=9)
    ax.set_title('Cross-FSC resolution at %s (Å)' % threshold)
    if crossed is not None and not np.all(crossed):
        ax.set_xlabel('* never below %s: Nyquist' % threshold, fontsize=8)
    return im


def plot_fsc_curves(ax, data):
    fsc_data = data.get('fsc')
    if not fsc_data:
        ax.text(0.5, 0.5, 'no maps compared', ha='center', va='center')
        ax.axis('off')
        return
    freq = np.array(fsc_data['freq'])
    names = fsc_data['names']
    for c in fsc_data['curves']:
        i, j = c['pair']
        ax.plot(freq[1:], np.array(c['fsc'])[1:], label='%s / %s' % (names[i], names[j]))
    for t in (0.5, 0.143):
        ax.axhline(t, color='k', ls=':', lw=0.8)
    ax.set_xlabel('spatial frequency (1/Å)')
    ax.set_ylabel('FSC')
    ax.set_ylim(-0.1, 1.05)
    ax.legend(fontsize=7)
    ax.set_title('Cross-FSC of the aligned maps')


def _hist(ax, values_by_pair, labels, tol, xlabel, title):
    if not values_by_pair or all(len(v) == 0 for v in values_by_pair):
        ax.text(0.5, 0.5, 'no common particles', ha='center', va='center')
        ax.axis('off')
        return
    top = max(float(np.max(v)) for v in values_by_pair if len(v))
    bins = np.linspace(0.0, max(top, 2.0 * tol if tol else 1.0) * 1.02, 40)
    for v, lab in zip(values_by_pair, labels):
        ax.hist(v, bins=bins, histtype='step', lw=1.5, label=lab)
    if tol:
        ax.axvline(tol, color='r', ls='--', lw=1, label='tolerance %g' % tol)
    ax.set_xlabel(xlabel)
    ax.set_ylabel('particles')
    ax.set_yscale('log')
    ax.legend(fontsize=7)
    ax.set_title(title)


def _pair_labels(data, arrays):
    names = [str(x) for x in arrays['names']]
    return ['%s / %s' % (names[i], names[j]) for i, j in arrays['pairs']]


def plot_angle_hist(ax, data, arrays):
    s = data.get('summary') or {}
    if arrays is None:
        _hist(ax, [], [], 0, '', '')
        return
    _hist(ax, list(arrays['angle']), _pair_labels(data, arrays), s.get('angle_tol_deg'),
          'angle difference (deg, %s)' % s.get('symmetry', 'C1'), 'Angular differences')


def plot_shift_hist(ax, data, arrays):
    s = data.get('summary') or {}
    if arrays is None:
        _hist(ax, [], [], 0, '', '')
        return
    _hist(ax, list(arrays['shift']), _pair_labels(data, arrays), s.get('shift_tol_A'),
          'origin difference (A)', 'Shift differences')


FIGURES = (('cross_fsc', 'Cross-FSC resolution matrix'), ('fsc_curves', 'Cross-FSC curves'),
           ('angles', 'Angular differences'), ('shifts', 'Shift differences'))


def draw_figure(fig, name, data, arrays):
    """Draw one of FIGURES into an (empty) matplotlib figure."""
    ax = fig.add_subplot(111)
    if name == 'cross_fsc':
        im = plot_cross_fsc_matrix(ax, data)
        if im is not None:
            fig.colorbar(im, ax=ax, label='A')
    elif name == 'fsc_curves':
        plot_fsc_curves(ax, data)
    elif name == 'angles':
        plot_angle_hist(ax, data, arrays)
    elif name == 'shifts':
        plot_shift_hist(ax, data, arrays)
    else:
        raise ValueError(f"Unknown figure {name!r}; choose from {[f for f, _ in FIGURES]}.")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------
# Report and summary text
# ---------------------------------------------------------------------------------------
def save_figures(folder, data=None, arrays=None, dpi=100):
    """Write the FIGURES as <name>.png into folder (from the saved result when data is None)."""
    from matplotlib.figure import Figure
    if data is None:
        data, arrays = load_result(folder)
    paths = []
    for name, _ in FIGURES:
        fig = Figure(figsize=(6.5, 4.5))
        draw_figure(fig, name, data, arrays)
        path = os.path.join(folder, name + '.png')
        fig.savefig(path, dpi=dpi)
        paths.append(path)
    return paths


def write_report(folder, title='Consensus of refinements'):
    """consensus.html next to consensus.json, with the figures; returns its path."""
    import html
    data, arrays = load_result(folder)
    save_figures(folder, data, arrays)
    s = data.get('summary')
    rows = []
    if s:
        frac = s['fraction_agree']
        rows += [('engines', ', '.join(s['engines'])), ('symmetry', s['symmetry']),
                 ('tolerances', '%g deg, %g A' % (s['angle_tol_deg'], s['shift_tol_A'])),
                 ('rule', 'at least %d of %d engines agree' % (s['min_agree'],
                                                              len(s['engines']))),
                 ('common particles', str(s['n_common'])),
                 ('agreeing', '%d (%.1f %%)' % (s['n_agree'], 100 * frac if frac is not None
                                                else 0.0)),
                 ('disagreeing', str(s['n_disagree']))]
        for p in s['pairs']:
            a, sh = p['angle'], p['shift']
            if a['n']:
                rows.append(('%s / %s' % tuple(p['names']),
                             'angle median %.2f, p90 %.2f deg; shift median %.2f, p90 %.2f A; '
                             'agree %.1f %%' % (a['p50'], a['p90'], sh['p50'], sh['p90'],
                                                100 * p['fraction_agree'])))
    f = data.get('fsc')
    for c in (f or {}).get('curves', []):
        i, j = c['pair']
        rows.append(('cross-FSC %s / %s' % (f['names'][i], f['names'][j]),
                     '%.2f A at 0.5%s, %.2f A at 0.143%s' % (
                         f['res05'][i][j], '' if f['crossed05'][i][j] else ' (Nyquist)',
                         f['res0143'][i][j], '' if f['crossed0143'][i][j] else ' (Nyquist)')))
    for k, t in enumerate(data.get('transforms') or []):
        if t:
            rows.append(('frame of input %d' % (k + 1),
                         '%s: rotation %.2f deg, shift (%s) A, hand %s, score %.3f' % (
                             t['method'], t['rotation_angle_deg'],
                             ', '.join('%.2f' % x for x in t['shift_A']), t['hand'],
                             t['score'])))
    table = '\n'.join('<tr><th>%s</th><td>%s</td></tr>' % (html.escape(k), html.escape(v))
                      for k, v in rows)
    figs = '\n'.join('<h2>%s</h2><img src="%s.png" alt="%s">' % (label, name, label)
                     for name, label in FIGURES)
    text = ('<!DOCTYPE html><html><head><meta charset="utf-8"><title>%s</title>'
            '<style>body{font-family:sans-serif} th{text-align:left;padding-right:1em}'
            '</style></head><body><h1>%s</h1><table>%s</table>%s</body></html>'
            % (html.escape(title), html.escape(title), table, figs))
    path = os.path.join(folder, REPORT_HTML)
    with open(path, 'w') as fh:
        fh.write(text)
    return path


def agreement_line(summary):
    """'n of m common particles agree (x %), k do not' from ConsensusResult.summary()."""
    s = summary
    return (f"{s['n_agree']} of {s['n_common']} common particles agree "
            f"({100 * (s['fraction_agree'] or 0):.1f} %), {s['n_disagree']} do not")


def summary_lines(data):
    """Lines of the protocol summary from the consensus.json dict (see consensus_results)."""
    lines = []
    s = data.get('summary')
    if s:
        lines.append('Agreeing particles: %d of %d common (%.1f %%); disagreeing: %d '
                     '(rule: %d of %d engines within %g deg and %g A, symmetry %s)'
                     % (s['n_agree'], s['n_common'], 100 * (s['fraction_agree'] or 0),
                        s['n_disagree'], s['min_agree'], len(s['engines']),
                        s['angle_tol_deg'], s['shift_tol_A'], s['symmetry']))
        for p in s['pairs']:
            a, sh = p['angle'], p['shift']
            if a['n']:
                lines.append('%s vs %s: angle median %.2f deg (p75 %.2f, p90 %.2f, p95 '
                             '%.2f), shift median %.2f A (p90 %.2f), agree %.1f %%'
                             % (p['names'][0], p['names'][1], a['p50'], a['p75'],
                                a['p90'], a['p95'], sh['p50'], sh['p90'],
                                100 * p['fraction_agree']))
        missing = {k: v for k, v in s['not_common'].items() if v}
        if missing:
            lines.append('Not in every set (not judged): %s'
                         % ', '.join('%s %d' % kv for kv in missing.items()))
    for k, t in enumerate(data.get('transforms') or []):
        if t and t['method'] != 'identity':
            lines.append('Frame of input %d (from %s): rotation %.1f deg, shift %.1f A, '
                         'hand %s, score %.3f' % (k + 1, t['method'],
                                                  t['rotation_angle_deg'],
                                                  float(np.linalg.norm(t['shift_A'])),
                                                  t['hand'], t['score']))
    f = data.get('fsc')
    if f:
        for c in f['curves']:
            i, j = c['pair']
            r = f['res05'][i][j]
            lines.append('Cross-FSC %s vs %s: %s at 0.5'
                         % (f['names'][i], f['names'][j],
                            ('%.2f A' % r) + ('' if f['crossed05'][i][j]
                                              else ' (Nyquist, never below 0.5)')))
    return lines


def methods_text(summary):
    """The protocol's methods paragraph from ConsensusResult.summary()."""
    s = summary
    return ('The poses of %d refinements were compared per particle after bringing them '
            'into one frame; a particle was kept when at least %d engines agreed within '
            '%g degrees (symmetry %s) and %g A, following the consensus rule of Sorzano '
            'et al. (two disagreeing estimates discard the particle). %d of %d particles '
            '(%.1f %%) agreed.' % (len(s['engines']), s['min_agree'], s['angle_tol_deg'],
                                   s['symmetry'], s['shift_tol_A'], s['n_agree'],
                                   s['n_common'], 100 * (s['fraction_agree'] or 0)))
