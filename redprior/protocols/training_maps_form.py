"""Form constants of 'training maps' (protocol_training_maps): choices, files and help texts.

No Scipion import: the tables are plain data.
"""
SRC_MAPS, SRC_MODELS, SRC_SHIPPED = 0, 1, 2
SOURCE_LABELS = ['ground-truth maps', 'atomic models', 'shipped training set']
MODE_RELION, MODE_PERTURBED, MODE_GAUSSIAN = 0, 1, 2
MODE_LABELS = ['RELION intermediates', 'perturbed-pose reconstructions', 'Gaussian noise']
MODE_NAMES = ['record', 'perturbed_pose', 'gaussian']  # Pair.mode of each
RELION_AUTO, RELION_PLAIN = 0, 1
RELION_LABELS = ['auto-refine (relion_refine_mpi, gold-standard halves)',
                 'fixed iterations (relion_refine, one map per iteration)']

# files under the protocol's extra/ folder
PAIRS_DIR = 'pairs'
PARTS_DIR = 'parts'
SUMMARY_FILE = 'training_maps.json'
STRUCTURES_FILE = 'structures.json'

HELP = dict(
    trainingMode='RELION intermediates: the paper\'s main set (slow: one refinement '
                 'per structure and SNR). Perturbed poses: reconstructions of '
                 'simulated particles at wrong poses (seconds per pair). Gaussian '
                 'noise: the paper\'s second set (fastest).',
    inputSource='Maps: e.g. the ground truth of "simulate particles" (its box and '
                'pixel size are used; all maps must share them). Atomic models: '
                'turned into scattering potentials at the box and pixel size below. '
                'Shipped training set: the structures of '
                'redprior/data/training_manifest.json. Structures reserved for '
                'evaluation and the demo model are refused.',
    inputVolumes='Each map is one structure (the validation split of "train '
                 'denoiser" keeps structures apart).',
    inputParticles='RELION intermediates only: particles simulated from each map, in '
                   'the same order (e.g. the outputs of "simulate particles"). Empty: '
                   'particles are simulated here (see the RELION section).',
    inputAtomStructs='Each model (all its chains) is one structure.',
    manifest='Empty: the one shipped with redprior. Chains whose package is '
             'not installed are skipped (the log names the install command).',
    maxStructures='0: all of them. Fewer: one chain of every entry first, evenly spaced '
                  'over the manifest (which lists the chains of one complex together), '
                  'then second chains, and so on.',
    boxSize='Even; a multiple of 2^levels of the U-Net to be trained (16 for '
            'the default 4 levels).',
    pixelSize='The denoiser is used at this pixel size (within a factor 2).',
    pairsPerStructure='RELION intermediates: at most this many of the recorded maps, '
                      'evenly spaced (0: all).',
    resolutionBest='Gaussian noise: nominal resolutions are drawn log-uniformly '
                   'between best and worst (clamped to what the box can show). RELION '
                   'intermediates: maps outside the range are not kept.',
    solventNoise='The noise is multiplied by this outside a soft mask of the '
                 'ground truth (the paper damps solvent noise).',
    limitShells='Keep only the shells up to the nominal resolution + 10, as RELION\'s '
                'intermediates do.',
    angleErrorMin='rms angular error of each reconstruction, drawn log-uniformly '
                  'in [from, to].',
    bothHalves='Each reconstruction gives two half-maps with the same target: '
               'two pairs for the cost of one.',
    relionRun='Auto-refine: the paper\'s setting, half-maps with their '
              'gold-standard FSC (needs MPI >= 3). Fixed iterations: plain '
              'relion_refine without halves; the FSC of each map is then '
              'FSC(x~, ground truth)^2, the FSC two halves of its quality would '
              'show.',
    relionSnrs='One simulated set and refinement per value (the paper: 0.0003-0.01). '
               'Not used when particles are given.',
)
