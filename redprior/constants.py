"""Names and defaults shared by the redprior plugin (no Scipion or TensorFlow import here)."""

# Environment variables
RELION_HOME = 'RELION_HOME'
# RELION runs this program (with the STAR file of each half as last argument) instead of
# its own reconstruction when --external_reconstruct is given.
RELION_EXTERNAL_RECONSTRUCT_EXECUTABLE = 'RELION_EXTERNAL_RECONSTRUCT_EXECUTABLE'

# RELION programs the plugin relies on; the first one is what validateInstallation checks
# first because refinement cannot run without it.
RELION_REFINE_MPI = 'relion_refine_mpi'
RELION_REFINE = 'relion_refine'
RELION_REQUIRED_PROGRAMS = [RELION_REFINE_MPI, RELION_REFINE]
RELION_INSTALL_HINT = ("install RELION (Debian: apt-get install relion openmpi-bin) "
                       "or set RELION_HOME to a RELION installation (its bin/ folder is used)")

# Simulation: noise specification
NOISE_BY_SNR = 0
NOISE_BY_SCALE = 1
NOISE_CHOICES = ['SNR', 'scale factor']

# Simulation: source of the ground truth
SOURCE_ATOMSTRUCT = 0
SOURCE_VOLUME = 1
SOURCE_CHOICES = ['atomic model', 'volume']

# Files written by the simulate protocol (relative to its extra/ folder)
SIM_GROUND_TRUTH = 'ground_truth.mrc'
SIM_INITIAL_MODEL = 'initial_model.mrc'
SIM_PARTICLES_NAME = 'particles'      # -> particles.star + particles.mrcs
SIM_JSON = 'simulation.json'

# The smallest box the simulation accepts: below this RELION refinement is meaningless.
from redprior.core.simulation.limits import MIN_BOX  # noqa: E402,F401 (defined there)
