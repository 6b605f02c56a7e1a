"""Where the files shipped inside the package are (redprior/data): one place for every path."""
import os

DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "data")
# the demo and test structure (GluA2 NTD dimer, 3HSY; see data/README)
DEMO_MODEL = os.path.join(DATA_DIR, "3hsy_glua2_ntd_dimer.pdb.gz")
# the default denoiser (with its .json metadata and TRAINING_REPORT.md)
DEFAULT_DENOISER = os.path.join(DATA_DIR, "denoiser", "redprior_default_denoiser.keras")
# the offline training structure set (scripts/build_training_set.py)
TRAINING_MANIFEST = os.path.join(DATA_DIR, "training_manifest.json")
