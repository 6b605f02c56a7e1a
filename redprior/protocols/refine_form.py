"""The 'Prior' section of the 'CW-RED 3D auto-refine' form, and the help texts of every field
(what each does, in RELION's terms)."""
import pyworkflow.protocol.params as params

from redprior.core.denoiser.views import HALF_VIEWS_DEFAULT, HALF_VIEWS_ROTATED
from redprior.core.prior import schedule
from redprior.core.prior.options import DENOISER_INPUTS

PRIOR_GAUSSIAN, PRIOR_RED, PRIOR_CWRED, PRIOR_CWRED_SHELL = 0, 1, 2, 3
PRIOR_MODES = list(schedule.MODES)  # form index -> the hook's --mode
PRIOR_LABELS = ['Gaussian (plain RELION)', 'RED', 'CW-RED', 'CW-RED per shell']
CW_CONDITION = 'priorMode in (%d, %d)' % (PRIOR_CWRED, PRIOR_CWRED_SHELL)
DENOISER_INPUT_LABELS = ['direct B/K (fast)', "RELION's gridding (exact)"]

HELP = {
    'referenceVolume': 'Same box and pixel size as the particles. RELION low-passes it to '
                       '"Initial low-pass" before the first iteration (--ref, --ini_high).',
    'iniHigh': 'Resolution (Å) the reference is low-pass filtered to before iteration 1 '
               '(--ini_high). Low enough that the reference carries no detail the data must '
               'find themselves: 30-60 Å is usual; the wizard suggests max(30 Å, 4 x Nyquist).',
    'symmetry': 'Point group of the particle in RELION\'s notation (--sym): C1 (none), Cn, '
                'Dn, T, O, I (I1-I4 for the icosahedral orientations). Angular errors and '
                'the consensus are computed modulo the same group.',
    'particleDiameter': 'Diameter (Å) of the soft circular mask RELION applies to the '
                        'particles and of the solvent flattening (--particle_diameter). '
                        '-1: 90% of the box. The wizard measures it from the reference.',
    'priorMode': 'How the map is regularised in each M-step (Kimanius et al. 2021, their '
                 'update (17): x = (B + λ F[f(x̃)] / τ²) / (K + 1/τ²), x̃ = B/K, f the '
                 'denoiser). Gaussian: RELION\'s own smooth prior (λ = 0), through the same '
                 'hook. RED: a fixed λ in every iteration. CW-RED: λ from the current '
                 'resolution, 0 worse than "λ 0 above", 1 better than "λ 1 below", linear '
                 'between, so the denoiser acts only where it is trusted. CW-RED per shell: '
                 'the CW-RED λ times the denoiser\'s per-shell table (from its single-pass '
                 'evaluation), so shells where one pass did not help get less prior; needs a '
                 'denoiser trained with validation structures.',
    'capAtResolution': 'Apply the prior only up to the current resolution (the last shell '
                       'where the gold-standard FSC RELION hands to the hook is at or above '
                       '0.143, with a %d-shell soft edge); beyond it RELION\'s own Gaussian '
                       'prior. The denoiser puts the same kind of features into both half-maps, '
                       'so where the data do not yet agree it can make the half-map FSC run '
                       'ahead of the truth; the cap keeps that FSC the data\'s own (RELION 5\'s '
                       'Blush does the same, its "spectral trailing"). See README "Benchmarks".'
                       % schedule.CAP_EDGE_SHELLS,
    'lowpassReference': 'Low-pass each half\'s map that goes back to RELION, data and prior '
                        'alike, at the current resolution (the gold-standard FSC\'s 0.143 '
                        'shell, the edge of "Prior only up to the current resolution?"), so the '
                        'next iteration\'s references hold nothing the two halves do not yet '
                        'support (RELION 5\'s Blush does this, its "spectral trailing"). The '
                        'final joined map is never cut. On the quality benchmark (3ENL, no '
                        'CTF) it gave as good or better maps with fewer shells over-claimed by '
                        'the half-maps at SNR 0.06 and the same gain at 0.04; off by default '
                        'until the whole benchmark has run with it. See README "Benchmarks".',
    'denoiserInput': 'How x̃ = B/K, the map the denoiser sees, is computed. Direct: one '
                     'division and inverse FFT, as the method\'s authors and RELION 5\'s Blush '
                     'do. RELION\'s gridding: RELION\'s 10 gridding iterations, a second full '
                     'reconstruction in every M-step (2x the time of the hook at large boxes). '
                     'The map RELION gets back differs by ~1 %% between the two and is as close '
                     'to the truth (README "Speed").',
    'halfViews': 'Denoise half-map 2 turned by a quarter turn about z (and turn the result '
                 'back), half-map 1 as it is. A 3D U-Net is not rotation-equivariant: in one '
                 'frame it adds the same orientation-dependent detail to both half-maps, the '
                 'particles of both halves align to it and the half-map FSC runs ahead of the '
                 'map. In two frames that detail differs between the halves (on held-out '
                 'structures it cuts what the two denoised halves share beyond the truth from '
                 '+0.04-0.18 to about +0.01 at 6-4 Å) at no cost in time and with the same '
                 'fidelity to the truth. In whole refinements (3ENL) the map was as good or '
                 'slightly better, but the half-map over-claim at SNR 0.06 stayed (3 and 7 '
                 'shells), so it is off by default. See README "Benchmarks".',
    'denoiserModel': 'Output of "train denoiser" (preferred over a file path below).',
    'denoiserFile': 'A model with its .json metadata, used when no denoiser is selected above. '
                    'Both empty: the denoiser shipped with redprior (redprior/data/denoiser: a '
                    'U-Net trained at 2 Å/px by this plugin\'s protocols, usable from 1 to 4 '
                    'Å/px; see its TRAINING_REPORT.md).',
    'redLambda': 'λ of RED, or the largest λ of CW-RED (reached better than "λ 1 below"). '
                 '0 gives RELION\'s Gaussian prior; 1 trusts the denoiser fully where the '
                 'half-maps disagree. Values between weaken the prior.',
    'cwLow': 'CW-RED: λ is 0 while the current resolution is worse than this (Å). The '
             'resolution is read from the gold-standard FSC that RELION hands to the hook in '
             'each iteration (last shell before it drops below 0.143). The wizard reads it '
             'from the denoiser\'s metadata (the shipped denoiser: 20 Å, measured by the quality '
             'benchmark), else the paper\'s 10 Å.',
    'cwHigh': 'CW-RED: λ reaches its maximum once the current resolution is better than this '
              '(Å): the denoiser\'s own value (the shipped one: 10 Å), else the paper\'s 4.5 Å. '
              'Must be smaller than "λ 0 above".',
    'doGpu': 'Run the denoiser worker (the network pass of every M-step) on an NVIDIA GPU. '
             'The GPU is for the denoiser only: RELION 3.1 from Debian is CPU-only and gets no '
             'GPU flags from this protocol. Needs TensorFlow with CUDA (README "GPU": pip '
             'install "scipion-em-redprior[gpu]"); without a usable GPU the worker runs on '
             'the CPU and says why in extra/worker.log and in this protocol\'s log ("no GPU '
             'usable (...), running on the CPU"). No: the CPU, whatever is installed.',
    'gpusToUse': 'GPU ids for the denoiser worker as CUDA numbers them (CUDA_VISIBLE_DEVICES): '
                 '"0", "0,1"; RELION\'s per-rank form "0,0:1,1" means the GPUs 0 and 1. The '
                 'worker runs on the first of them, both halves at once.',
    'healpixOrder': 'Initial angular sampling (--healpix_order): 1 = 15°, 2 = 7.5°, 3 = 3.7°. '
                    'RELION\'s default 2 is several times slower and rarely needed for small '
                    'boxes.',
    'autoLocalHealpixOrder': 'From this angular sampling on, RELION searches only near the '
                             'current orientations (--auto_local_healpix_order; 3 = 3.7°).',
    'offsetRange': 'Translational search range in pixels (--offset_range).',
    'offsetStep': 'Translational search step in pixels (--offset_step).',
    'padding': 'Oversampling of the Fourier transform in reconstruction (--pad). 2 is more '
               'accurate and RELION\'s default; 1 halves the memory and time of each M-step.',
    'lowResolJoinHalves': 'Resolutions coarser than this (Å) are averaged between the two '
                          'half-sets to keep them in one frame (--low_resol_join_halves); the '
                          'gold-standard FSC is independent only beyond it.',
    'randomSeed': 'Seed of RELION\'s random split into half-sets (--random_seed): the same '
                  'seed gives the same halves, so two priors can be compared fairly.',
    'keepExternalFiles': 'Keep RELION\'s data term B and weight K of each call (3 x the '
                         'padded box in float32 per half and iteration), e.g. to recompute '
                         'an iteration with redprior_exrecon.',
    'extraParams': 'Passed to relion_refine as given, after the arguments built here.',
}


def define_prior_section(form):
    """The 'Prior' section: mode, denoiser, lambda and its schedule, cap, denoiser input, GPU."""
    form.addSection(label='Prior')
    form.addParam('priorMode', params.EnumParam, choices=PRIOR_LABELS,
                  default=PRIOR_CWRED, display=params.EnumParam.DISPLAY_HLIST,
                  label='Prior', help=HELP['priorMode'])
    notGaussian = 'priorMode != %d' % PRIOR_GAUSSIAN
    form.addParam('denoiserModel', params.PointerParam, pointerClass='DenoiserModel',
                  allowsNull=True, condition=notGaussian, label='Denoiser',
                  help=HELP['denoiserModel'])
    form.addParam('denoiserFile', params.PathParam, default='', condition=notGaussian,
                  label='or denoiser file (.keras)', help=HELP['denoiserFile'])
    form.addParam('redLambda', params.FloatParam, default=1.0, condition=notGaussian,
                  label='λ (maximum)', help=HELP['redLambda'])
    ramp = schedule.shipped_ramp()
    form.addParam('cwLow', params.FloatParam, default=ramp[0],
                  condition=CW_CONDITION, label='λ 0 above (Å)', help=HELP['cwLow'])
    form.addParam('cwHigh', params.FloatParam, default=ramp[1],
                  condition=CW_CONDITION, label='λ 1 below (Å)', help=HELP['cwHigh'])
    form.addParam('capAtResolution', params.BooleanParam, default=schedule.CAP_DEFAULT,
                  condition=notGaussian, label='Prior only up to the current resolution?',
                  help=HELP['capAtResolution'])
    form.addParam('lowpassReference', params.BooleanParam, default=False,
                  condition=notGaussian, label="Low-pass each half's reference at the resolution?",
                  help=HELP['lowpassReference'])
    form.addParam('halfViews', params.BooleanParam,
                  default=HALF_VIEWS_DEFAULT == HALF_VIEWS_ROTATED, condition=notGaussian,
                  label='Denoise the two halves in different frames?', help=HELP['halfViews'])
    form.addParam('denoiserInput', params.EnumParam, choices=DENOISER_INPUT_LABELS,
                  default=DENOISER_INPUTS.index('direct'), condition=notGaussian,
                  expertLevel=params.LEVEL_ADVANCED, label='Denoiser input x̃',
                  help=HELP['denoiserInput'])
    form.addParam('doGpu', params.BooleanParam, default=True, condition=notGaussian,
                  label='Use GPU acceleration?', help=HELP['doGpu'])
    form.addParam('gpusToUse', params.StringParam, default='0', label='Which GPUs to use',
                  condition=notGaussian + ' and doGpu', help=HELP['gpusToUse'])
