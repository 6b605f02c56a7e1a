"""Atomic models: reading, a short summary and the electron scattering potential on a grid.

Pure numpy + gemmi (no Scipion). Maps follow RELION's conventions: cubic box, array axes
(z, y, x) as mrcfile stores them, the model's centre of mass at voxel index box//2.
"""
import os

import gemmi
import numpy as np

from redprior.core.fourier.filters import fourier_resample, irfft_centred, rfft_centred
from redprior.core.fourier.grid import radius2

# Extra room (A) kept between the outermost atom and the edge of the box: the potential of
# an atom spreads over a couple of A, and the part that crosses the edge would wrap around.
FIT_MARGIN_A = 3.0

# Fine sampling used before Fourier-cropping to the requested pixel size. Sampling atoms
# directly at a coarse pixel aliases everything beyond Nyquist back into the map.
_FINE_PIXEL_A = 1.0
_MAX_FINE_BOX = 256



def read_structure(path):
    """Read a PDB or mmCIF model (optionally gzipped) and keep the polymer atoms of model 1.

    Waters, ligands, hydrogens and alternate conformations (all but the first) are removed,
    as they are not part of the particle that the simulation should represent.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"Atomic model {path} does not exist. Give the path of a PDB or "
                         "mmCIF file (.pdb, .cif, optionally .gz).")
    try:
        st = gemmi.read_structure(path)
    except Exception as exc:  # gemmi raises RuntimeError/ValueError/OSError for bad files
        raise ValueError(f"Atomic model {path} could not be read ({exc}). Check that it is "
                         "a complete PDB or mmCIF file.") from exc
    if len(st) == 0:
        raise ValueError(f"Atomic model {path} contains no model (no ATOM records). "
                         "Give a file with atomic coordinates.")
    clean_structure(st)
    if _count_atoms(st) == 0:
        raise ValueError(f"Atomic model {path} has no polymer atoms after removing waters, "
                         "ligands and hydrogens. Give a model of a protein or nucleic acid.")
    return st


def clean_structure(st):
    # Only the first model: NMR ensembles would otherwise be summed into one map.
    while len(st) > 1:
        del st[len(st) - 1]
    st.setup_entities()
    st.remove_hydrogens()
    st.remove_ligands_and_waters()
    st.remove_alternative_conformations()
    st.remove_empty_chains()


def _count_atoms(st):
    return sum(len(res) for ch in st[0] for res in ch)


def _coords(model):
    return np.array([[a.pos.x, a.pos.y, a.pos.z] for ch in model for res in ch for a in res],
                    dtype=np.float64).reshape(-1, 3)


def _as_structure(path_or_structure):
    if isinstance(path_or_structure, gemmi.Structure):
        st = path_or_structure.clone()
        clean_structure(st)
        if _count_atoms(st) == 0:
            raise ValueError("The atomic model has no polymer atoms after removing waters, "
                             "ligands and hydrogens.")
        return st
    return read_structure(path_or_structure)


def structure_summary(st):
    """Chains, residues, atoms, mass (kDa) and max atom distance from the centre of mass (A)."""
    model = st[0]
    xyz = _coords(model)
    com = model.calculate_center_of_mass()
    centre = np.array([com.x, com.y, com.z])
    return dict(chains=len(model),
                residues=sum(len(ch) for ch in model),
                atoms=len(xyz),
                mass_kda=float(model.calculate_mass()) / 1000.0,
                max_radius_A=float(np.linalg.norm(xyz - centre, axis=1).max()) if len(xyz) else 0.0)


def min_box_for(max_radius_A, pixel_size, margin_A=FIT_MARGIN_A):
    """Smallest even box (pixels) whose inscribed sphere holds max_radius_A + margin_A."""
    need = (max_radius_A + margin_A) / float(pixel_size)
    # the positive side of a box centred at n//2 has n/2 - 1 whole voxels
    return int(2 * np.ceil(need + 1.0))


def potential_map(path_or_structure, box, pixel_size, blur=None):
    """Electron scattering potential of a model on a box^3 grid at pixel_size A (float32, z,y,x).

    Computed with gemmi's DensityCalculatorE (electron scattering factors, atomic B-factors)
    on a finer grid and Fourier-cropped to the requested pixel, then limited to the Nyquist
    sphere: the result is the band-limited potential without aliasing, holding exactly the
    frequencies a projection can carry. `blur` (A^2) adds a B-factor to all atoms.
    The centre of mass is at voxel index box//2 in every axis. Values are gemmi's point
    samples of the potential (not normalised), so SNR and scale factors refer to these units.
    """
    box = int(box)
    pixel_size = float(pixel_size)
    if box < 8 or pixel_size <= 0:
        raise ValueError(f"potential_map needs box >= 8 and pixel_size > 0, got box={box}, "
                         f"pixel_size={pixel_size}.")
    st = _as_structure(path_or_structure)
    info = structure_summary(st)
    available = (box / 2.0 - 1.0) * pixel_size
    if info["max_radius_A"] + FIT_MARGIN_A > available:
        need = min_box_for(info["max_radius_A"], pixel_size)
        raise ValueError(
            f"The atomic model does not fit in a box of {box} pixels at {pixel_size:g} A/px "
            f"({box * pixel_size:.1f} A): its atoms reach {info['max_radius_A']:.1f} A from the "
            f"centre of mass (plus {FIT_MARGIN_A:g} A margin). Use a box of at least {need} "
            f"pixels, or a larger pixel size.")

    factor = max(1, int(np.ceil(pixel_size / _FINE_PIXEL_A)))
    factor = max(1, min(factor, _MAX_FINE_BOX // box))
    fine_n = box * factor
    fine_px = pixel_size / factor

    # Move the centre of mass onto the fine grid's centre voxel; fourier_resample keeps
    # voxel n//2 as the origin, so it lands on voxel box//2 of the output.
    model = st[0]
    com = model.calculate_center_of_mass()
    target = (fine_n // 2) * fine_px
    shift = gemmi.Position(target - com.x, target - com.y, target - com.z)
    for ch in model:
        for res in ch:
            for atom in res:
                atom.pos = atom.pos + shift

    side = fine_n * fine_px
    st.cell = gemmi.UnitCell(side, side, side, 90, 90, 90)
    st.spacegroup_hm = "P 1"
    dc = gemmi.DensityCalculatorE()
    dc.grid.set_unit_cell(st.cell)
    dc.grid.spacegroup = gemmi.SpaceGroup("P 1")
    dc.grid.set_size(fine_n, fine_n, fine_n)
    dc.d_min = 0.0  # grid already sized: initialize_grid just zeroes it
    dc.blur = float(blur) if blur else 0.0
    dc.put_model_density_on_grid(model)
    # gemmi's grid is indexed (u, v, w) = (x, y, z); mrcfile wants (z, y, x)
    fine = np.array(dc.grid, copy=True).transpose(2, 1, 0)
    out = fourier_resample(fine, box) if factor > 1 else fine
    return nyquist_sphere(out)


def nyquist_sphere(vol):
    """Zero the Fourier components beyond |k| = N/2 (the cube's corners).

    Projections (ours and RELION's) only carry frequencies inside the Nyquist circle, so
    a reconstruction can never hold the corners; a ground truth that keeps them would cap
    any real-space comparison (~0.92 correlation for a 3 A/px potential).
    """
    n = vol.shape[0]
    ft = rfft_centred(np.asarray(vol, dtype=np.float64))
    ft[radius2(n) > (n / 2.0) ** 2] = 0
    return np.ascontiguousarray(irfft_centred(ft, n), dtype=np.float32)


def fit_problems(path, box, pixel_size):
    """[message] when the model at `path` does not fit a box of `box` px at `pixel_size`."""
    try:
        summary = structure_summary(read_structure(path))
    except ValueError as exc:
        return [str(exc)]
    radius = summary["max_radius_A"]
    need = min_box_for(radius, pixel_size)
    if box >= need:
        return []
    # inverse of min_box_for: the pixel size at which this box would be enough
    min_pixel = (radius + FIT_MARGIN_A) / (box / 2.0 - 1.0)
    return [f"The atomic model does not fit in a box of {box} px at {pixel_size:g} A/px: its "
            f"atoms reach {radius:.1f} A from the centre of mass. Use a box of at least "
            f"{need} px (or a pixel size of at least {min_pixel:.2f} A)."]
