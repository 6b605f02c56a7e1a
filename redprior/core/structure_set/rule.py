"""The selection rule of the training structures: its thresholds, in one place.

The paper (section 1.3 of docs/PAPER.md) trains on single-chain X-ray structures of
40-100 kDa; the relaxations used offline are explained in redprior/data/TRAINING_SET.md.
The builder records these values in the manifest's "rule".
"""

# The paper's 40-100 kDa leaves a handful of distinct chains offline; 15 kDa keeps
# compact single domains (~130 residues and up) that still fill a 96-px box at 1.5 A.
MIN_KDA = 15.0
MAX_KDA = 100.0
MAX_RESOLUTION_A = 4.0        # paper: "at least 4 A resolution"
MAX_GAP_RESIDUES = 30         # a longer hole is usually a missing domain, not a loop
MAX_MISSING_FRACTION = 0.25   # of the span between the first and last modelled residue
MIN_STANDARD_FRACTION = 0.9   # of residues that are one of the 20 amino acids (MSE counts)
DEDUP_IDENTITY = 0.9          # sequence identity (over the shorter chain) that keeps one
TM_THRESHOLD = 0.5            # TM-score to any reserved chain that excludes a chain
# Chains of one reserved entry with the same sequence are structurally near-identical
# (verified by the builder: TM >= 0.9 to the representative); TM to the other copies is
# computed only when TM to the representative is within this margin of the threshold.
COPY_MARGIN = 0.1
MIN_TM_RESIDUES = 30          # TM-scores of shorter peptides are noise
