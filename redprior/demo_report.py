"""The demo's report (summary.json, index.html and figures) from the protocols' own results.

Every number comes from where it is computed once: resolutions and FSCs from the validation
protocol (validation.json, core.fourier.fsc's read-out rule), the lambda history and RELION's
final estimate from the refine protocol (summary.json), the consensus from 'compare engines'.
Nothing is recomputed here, so the page, the validation report and the FSC objects agree.
"""
import html
import os

import numpy as np

from redprior.core.fourier.fsc import mean_fsc
from redprior.core.io.jsonfile import write_json
from redprior.core.prior.history import schedule_history

HALF_WHAT = ("gold-standard half-map FSC at 0.143: masked (auto mask of the ground truth), "
             "phase-randomisation corrected, as relion_postprocess")
TRUTH_WHAT = "FSC of the half-map average to the ground truth, masked (same mask)"
RELION_WHAT = "RELION's own final estimate: unmasked half-map FSC at 0.143"


def refinement_entry(label, refine, validate):
    """One refinement's figures, as the refine and validation protocols computed them."""
    s = refine.getResults()
    v = validate.getResults()
    curves, box = v['curves'], int(v['box'])
    half = curves['half_corrected']['resolution']['0.143']
    gt = curves['gt_masked']
    poses = v.get('poses') or {}
    return {
        'method': s['method'], 'label': label,
        'halfmap_resolution_0143': half['limit_A'], 'halfmap_resolution_text': half['text'],
        'halfmap_resolution_what': HALF_WHAT,
        'gt_resolution_05': gt['resolution']['0.5']['limit_A'],
        'gt_resolution_05_text': gt['resolution']['0.5']['text'],
        'gt_resolution_0143': gt['resolution']['0.143']['limit_A'],
        'gt_resolution_0143_text': gt['resolution']['0.143']['text'],
        'gt_fsc_mean': mean_fsc(gt['fsc'], box),
        'gt_what': TRUTH_WHAT + '; mean over shells 1..Nyquist',
        'gt_fsc_crosses': {'0.5': gt['resolution']['0.5']['crossed'],
                           '0.143': gt['resolution']['0.143']['crossed']},
        'relion_final_resolution': s['final_resolution'], 'relion_final_what': RELION_WHAT,
        'iterations': s['iterations'], 'wall_seconds': s['wall_seconds'],
        'lambda_history': s['lambda_history'],
        'denoiser': denoiser_description(refine),
        'validation': {'overestimation': v['overestimation']['verdict'],
                       'angular_error_deg': poses.get('angular', {}),
                       'shift_error_A': poses.get('shift', {}),
                       'pseudo_symmetry': (poses.get('pseudo_symmetry') or {}).get('text'),
                       'report': os.path.abspath(validate.getReportPath())},
        '_curves': {'frequencies': v['frequencies'], 'half': curves['half_corrected']['fsc'],
                    'truth': gt['fsc']},
    }


def denoiser_description(refine):
    from redprior.core.denoiser.model import DenoiserError, read_metadata
    path = refine.getDenoiserPath()
    if not path:
        return 'none (lambda = 0)'
    try:
        meta = read_metadata(path)
    except DenoiserError:
        return os.path.basename(path)
    return '%s: %s' % (meta.get('name', os.path.basename(path)), meta.get('description', ''))


def consensus_entry(prot):
    if prot is None:
        return {}
    s = (prot.getResults() or {}).get('summary', {})
    keep = ('engines', 'n_common', 'n_agree', 'n_disagree', 'fraction_agree', 'pairs')
    return {**{k: s[k] for k in keep if k in s},
            'report': os.path.abspath(prot.getReportPath())}


# ---- figures -------------------------------------------------------------------------------
def _figure(*args, **kwargs):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(*args, **kwargs)
    FigureCanvasAgg(fig)
    return fig


def plot_fsc(entries, path, nyquist):
    fig = _figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot(111)
    for e, colour in zip(entries, ('tab:blue', 'tab:red', 'tab:green', 'tab:orange')):
        c = e['_curves']
        f = np.asarray(c['frequencies'], dtype=float)
        ax.plot(f[1:], np.asarray(c['truth'])[1:], color=colour, lw=2,
                label='%s: FSC to truth (0.5: %s)' % (e['label'], e['gt_resolution_05_text']))
        ax.plot(f[1:], np.asarray(c['half'])[1:], color=colour, ls=':', lw=1.2,
                label='%s: half-maps (0.143: %s)' % (e['label'], e['halfmap_resolution_text']))
    for t in (0.5, 0.143):
        ax.axhline(t, color='grey', lw=0.6)
        ax.text(0.01 / nyquist, t + 0.01, 'FSC = %g' % t, ha='left', va='bottom', fontsize=7)
    ax.set_xlim(0, 1.0 / nyquist)
    ax.set_ylim(-0.05, 1.02)
    ax.set_xlabel('spatial frequency (1/Å)')
    ax.set_ylabel('FSC (masked)')
    top = ax.twiny()
    top.set_xlim(ax.get_xlim())
    ticks = [t for t in ax.get_xticks() if 0 < t <= 1.0 / nyquist + 1e-9]
    top.set_xticks(ticks)
    top.set_xticklabels(['%.1f' % (1.0 / t) for t in ticks])
    top.set_xlabel('resolution (Å)')
    ax.legend(fontsize=7, loc='lower left')
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_lambda(entries, path):
    fig = _figure(figsize=(7.5, 3.6))
    ax = fig.add_subplot(111)
    ax2 = ax.twinx()
    for e, colour in zip(entries, ('tab:blue', 'tab:red', 'tab:green', 'tab:orange')):
        hist = schedule_history(e['lambda_history'])  # the refine viewer's series
        if not hist:
            continue
        its = [h[0] for h in hist]
        ax.plot(its, [h[2] for h in hist], color=colour, marker='o', ms=3,
                label='%s: λ' % e['label'])
        ax2.plot(its, [h[1] for h in hist], color=colour, ls=':',
                 label='%s: resolution λ was computed from (Å)' % e['label'])
    ax.set_xlabel('iteration')
    ax.set_ylabel('λ')
    ax.set_ylim(-0.05, 1.05)
    ax2.set_ylabel('schedule resolution (Å)')
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + ax2.get_legend_handles_labels()[1]
    ax.legend(lines, labels, fontsize=7, loc='upper left')
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_slices(maps, path):
    """Central z slices of named maps side by side, each scaled to its own range."""
    fig = _figure(figsize=(3.0 * len(maps), 3.2))
    for i, (name, vol) in enumerate(maps):
        ax = fig.add_subplot(1, len(maps), i + 1)
        sl = np.asarray(vol)[vol.shape[0] // 2]
        ax.imshow(sl, cmap='gray', origin='lower')
        ax.set_title(name, fontsize=9)
        ax.axis('off')
    fig.tight_layout()
    fig.savefig(path, dpi=100)


# ---- page ----------------------------------------------------------------------------------
def _row(e):
    a = e['validation']['angular_error_deg'] or {}
    ang = '%.2f / %.2f' % (a['p50'], a['p90']) if a.get('p50') is not None else '-'
    return ('<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%.3f</td><td>%.2f Å</td>'
            '<td>%s</td><td>%d</td><td>%.0f</td><td>%s</td><td><a href="%s">report</a></td></tr>'
            % (html.escape(e['label']), html.escape(e['halfmap_resolution_text']),
               html.escape(e['gt_resolution_05_text']),
               html.escape(e['gt_resolution_0143_text']), e['gt_fsc_mean'],
               e['relion_final_resolution'], ang, e['iterations'], e['wall_seconds'],
               html.escape(e['validation']['overestimation'] or ''),
               html.escape(e['validation']['report'])))


def write_page(out, summary, entries):
    d = summary['dataset']
    cons = summary.get('consensus') or {}
    notes = ''.join('<p><b>%s</b>: near-symmetry. %s</p>' % (html.escape(e['label']),
                                                           html.escape(e['validation']['pseudo_symmetry']))
                    for e in entries if e['validation'].get('pseudo_symmetry'))
    cons_html = ''
    if cons:
        cons_html = ('<h2>Consensus of the engines</h2><p>%s of %s common particles agree '
                     '(%.0f %%). <a href="%s">Consensus report</a></p>'
                     % (cons.get('n_agree', '-'), cons.get('n_common', '-'),
                        100.0 * (cons.get('fraction_agree') or 0.0),
                        html.escape(cons.get('report', ''))))
    model = d.get('model_file') or 'the model'
    page = """<html><head><meta charset="utf-8"><title>redprior demo</title>
<style>body{font-family:sans-serif;max-width:1100px} td,th{padding:4px 8px}
th{background:#eee} .what{color:#555;font-size:90%%}</style></head><body>
<h1>RELION's Gaussian prior vs CW-RED on the same simulated particles</h1>
<p>%d particles of %s, box %d px at %g Å/px (Nyquist %.2f Å), SNR %.4f (requested %g), CTF
%s, seed %d. Denoiser: %s</p>
<table border=1><tr><th>prior</th><th>half-map FSC 0.143</th><th>FSC to truth 0.5</th>
<th>FSC to truth 0.143</th><th>mean FSC to truth</th><th>RELION's final</th>
<th>angular error median / p90 (°)</th><th>iterations</th><th>seconds</th>
<th>overestimation check</th><th>validation</th></tr>
%s</table>
%s
<p class="what">Half-map FSC: %s. FSC to truth: %s; "never crosses" means the curve stays above
the threshold up to Nyquist. Mean FSC to truth: its mean over shells 1..Nyquist. RELION's final:
%s. Angular errors against the true poses, symmetry-aware.</p>
<h2>FSC curves</h2><img src="fsc.png">
<h2>Central slices</h2><img src="slices.png">
<h2>λ per iteration</h2><p class="what">λ of each M-step (half 1) and the resolution it was
computed from (the half-map FSC that RELION handed to the hook).</p><img src="lambda.png">
%s
<p class="what">Scipion project: %s (open it with <code>scipion3 project redprior_demo</code>).
Everything above is also in <a href="summary.json">summary.json</a>.</p>
</body></html>
""" % (d['particles'], html.escape(model),
       d['box'], d['pixel_size'], 2 * d['pixel_size'], d['snr'] or 0.0, d['snr_requested'],
       'yes' if d['ctf'] else 'no', d['seed'], html.escape(entries[-1]['denoiser']),
       '\n'.join(_row(e) for e in entries), notes, HALF_WHAT, TRUTH_WHAT, RELION_WHAT, cons_html,
       html.escape(summary['project']))
    with open(os.path.join(out, 'index.html'), 'w') as fh:
        fh.write(page)


def write_report(out, dataset, entries, maps, consensus, project):
    """summary.json, index.html, fsc.png, lambda.png and slices.png in `out`."""
    nyquist = 2.0 * dataset['pixel_size']
    plot_fsc(entries, os.path.join(out, 'fsc.png'), nyquist)
    plot_lambda(entries, os.path.join(out, 'lambda.png'))
    plot_slices(maps, os.path.join(out, 'slices.png'))
    public = [{k: v for k, v in e.items() if not k.startswith('_')} for e in entries]
    summary = {'dataset': dataset, 'refinements': public, 'consensus': consensus,
               'project': project}
    write_json(os.path.join(out, 'summary.json'), summary)
    write_page(out, summary, entries)
    return summary
