"""The relion_refine arguments, built in one place (the hook's own in core.prior.exrecon).

Every RELION refinement this plugin starts (the refine protocol, 'training maps', the quality
benchmark) gets its arguments here. Only flags that RELION 3.1 knows are used; RELION 4 and 5
accept the same ones.
"""
import shlex
from dataclasses import dataclass


@dataclass
class RefineSettings:
    """What a relion_refine run needs; paths as RELION must see them (relative to its cwd)."""
    output_root: str
    particles_star: str
    reference: str
    mask_diameter_A: float
    ini_high_A: float = 30.0
    auto_refine: bool = True       # False: fixed iterations, one map (relion_refine, K = 1)
    iterations: int = 10           # only without auto_refine
    healpix_order: int = 1
    auto_local_healpix_order: int = 3
    offset_range: int = 2
    offset_step: int = 1
    symmetry: str = "C1"
    low_resol_join_halves_A: float = 40.0
    threads: int = 1
    random_seed: int = 42          # RELION skips its particle-order randomisation for seed 0
    pad: int = 2
    ctf: bool = False
    external_reconstruct: bool = True
    extra: str = ""                # the user's additional arguments, passed as given


def refine_args(s):
    """relion_refine(_mpi) arguments for `s`, as a list."""
    args = ["--o", s.output_root, "--i", s.particles_star, "--ref", s.reference,
            "--ini_high", "%g" % s.ini_high_A, "--particle_diameter", "%g" % s.mask_diameter_A,
            "--flatten_solvent", "--zero_mask", "--oversampling", "1",
            "--healpix_order", str(s.healpix_order),
            "--offset_range", str(s.offset_range), "--offset_step", str(s.offset_step),
            "--sym", s.symmetry, "--norm", "--scale", "--j", str(s.threads),
            "--pad", str(s.pad), "--random_seed", str(s.random_seed),
            "--dont_combine_weights_via_disc", "--preread_images"]
    if s.auto_refine:
        args += ["--auto_refine", "--split_random_halves",
                 "--low_resol_join_halves", "%g" % s.low_resol_join_halves_A,
                 "--auto_local_healpix_order", str(s.auto_local_healpix_order), "--pool", "30"]
    else:
        args += ["--iter", str(s.iterations), "--K", "1"]
    if s.ctf:
        # The reference is a CTF-free density: without this flag iteration 1 ignores the
        # CTF and the refinement stalls (measured on RELION 3.1.3).
        args += ["--ctf", "--ctf_corrected_ref"]
    if s.external_reconstruct:
        args.append("--external_reconstruct")
    if s.extra:
        args += shlex.split(s.extra)
    return args


def continue_args(optimiser_star, output_root, threads=1):
    """relion_refine arguments that continue a run from its optimiser file, hook kept."""
    return ["--continue", optimiser_star, "--o", output_root, "--external_reconstruct",
            "--j", str(threads)]
