"""RELION's --external_reconstruct contract (measured on RELION 3.1.3): the files it hands over.

RELION writes, per half and iteration, the Fourier data term B (real + imaginary MRC), the
weight K (both on the padded half-complex grid M^2 x (M/2+1), origin at [0, 0, 0], numpy
rfftn layout) and a STAR file with tau2 and the gold-standard FSC. It then runs the hook with
that STAR file and reads back a centred, real-space ori_size^3 map with no checks at all
(see reconstruct.py for how that map is made).
"""
import os
from dataclasses import dataclass, field

import numpy as np
from emtable import Table

from redprior.core.io.mrc import MapError, read_map, write_map


def relion_round(x):
    """RELION's ROUND: half away from zero (numpy's rint rounds half to even)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.sign(x) * np.floor(np.abs(x) + 0.5)
    return out.astype(np.int64) if out.ndim else int(out)


class ContractError(ValueError):
    """The files RELION handed over are inconsistent or missing."""


@dataclass
class ExternalJob:
    star: str
    data_real: str
    data_imag: str
    weight: str
    result: str
    result_star: str
    fudge: float
    pad: float
    ori_size: int
    current_size: int
    dimensionality: int
    tau2: np.ndarray = field(repr=False)
    fsc: np.ndarray = field(repr=False)
    iteration: int = -1
    half: int = 0  # 1, 2 or 0 for the final joined call
    # RELION 4 and 5 also write these (rlnPixelSize, rlnParticleDiameter); 3.1 does not
    pixel_size: float = None
    particle_diameter: float = None

    @property
    def padded_size(self):
        return int(relion_round(self.pad * self.ori_size))

    @property
    def r_max(self):
        """Highest Fourier radius (unpadded pixels) with data."""
        return self.current_size // 2

    def all_files(self):
        return [self.data_real, self.data_imag, self.weight]


def _resolve(path, star):
    """RELION writes paths relative to its working directory (our cwd when it calls us).

    Fall back to the STAR file's folder so the program can also be run afterwards on
    kept files from elsewhere.
    """
    if os.path.isabs(path) or os.path.exists(path):
        return path
    star_dir = os.path.dirname(os.path.abspath(star))
    cand = os.path.join(star_dir, os.path.basename(path))
    return cand if os.path.exists(cand) else path


def parse_iteration(star):
    """(iteration, half) from a name like run_it003_half2_class001_external_reconstruct.star."""
    base = os.path.basename(star)
    it, half = -1, 0
    if "_it" in base:
        try:
            it = int(base.split("_it")[-1][:3])
        except ValueError:
            pass
    if "_half1" in base:
        half = 1
    elif "_half2" in base:
        half = 2
    return it, half


GENERAL_LABELS = ("rlnExtReconsDataReal", "rlnExtReconsDataImag", "rlnExtReconsWeight",
                  "rlnExtReconsResult", "rlnExtReconsResultStarfile", "rlnTau2FudgeFactor",
                  "rlnPaddingFactor", "rlnOriginalImageSize", "rlnCurrentImageSize",
                  "rlnReferenceDimensionality")


def read_job(star):
    """The ExternalJob of one call, checked against what RELION must have written.

    fsc is None when the STAR has no rlnGoldStandardFsc column (the caller decides whether
    its schedule needs it)."""
    if not star.endswith(".star"):
        raise ContractError(f"Expected RELION's external-reconstruct STAR file, got '{star}'.")
    if not os.path.exists(star):
        raise ContractError(f"STAR file {star} does not exist (run from RELION's working directory).")
    try:
        gen = Table(fileName=star, tableName="external_reconstruct_general")
        row = next(iter(gen))
        tt = Table(fileName=star, tableName="external_reconstruct_tau2")
    except Exception as exc:
        raise ContractError(f"Cannot read the external-reconstruct blocks of {star}: {exc}") from exc
    missing = [label for label in GENERAL_LABELS if not gen.hasColumn(label)]
    if missing or not tt.hasColumn("rlnReferenceTau2"):
        missing += [] if tt.hasColumn("rlnReferenceTau2") else ["rlnReferenceTau2"]
        raise ContractError(f"{star} lacks {', '.join(missing)}: it is not a STAR file that "
                            "relion_refine --external_reconstruct wrote (or it was cut short).")
    tau2 = np.asarray(tt.getColumnValues("rlnReferenceTau2"), dtype=np.float64)
    fsc = None
    if tt.hasColumn("rlnGoldStandardFsc"):
        fsc = np.asarray(tt.getColumnValues("rlnGoldStandardFsc"), dtype=np.float64)
    if len(tau2) == 0:
        raise ContractError(f"{star} has an empty tau2 table. (relion_reconstruct 3.1.3 writes such "
                            "files; use relion_refine --external_reconstruct instead.)")
    if not np.all(np.isfinite(tau2)) or np.any(tau2 < 0):
        raise ContractError(f"{star}: tau2 must be finite and >= 0 (a signal power); found "
                            f"{int(np.sum(~np.isfinite(tau2) | (tau2 < 0)))} bad values.")
    it, half = parse_iteration(star)
    try:
        job = ExternalJob(
            star=star,
            data_real=_resolve(row.rlnExtReconsDataReal, star),
            data_imag=_resolve(row.rlnExtReconsDataImag, star),
            weight=_resolve(row.rlnExtReconsWeight, star),
            result=row.rlnExtReconsResult,
            result_star=row.rlnExtReconsResultStarfile,
            fudge=float(row.rlnTau2FudgeFactor),
            pad=float(row.rlnPaddingFactor),
            ori_size=int(row.rlnOriginalImageSize),
            current_size=int(row.rlnCurrentImageSize),
            dimensionality=int(row.rlnReferenceDimensionality),
            tau2=tau2, fsc=fsc, iteration=it, half=half,
            pixel_size=float(row.rlnPixelSize) if gen.hasColumn("rlnPixelSize") else None,
            particle_diameter=(float(row.rlnParticleDiameter)
                               if gen.hasColumn("rlnParticleDiameter") else None))
    except (TypeError, ValueError) as exc:
        raise ContractError(f"{star}: unreadable value in the general block ({exc}).") from exc
    if job.dimensionality != 3:
        raise ContractError(f"{star}: only 3D references are supported (got {job.dimensionality}D).")
    if not 0 < job.current_size <= job.ori_size or job.ori_size < 2:
        raise ContractError(f"{star}: current image size {job.current_size} must be between 1 "
                            f"and the box ({job.ori_size}).")
    if not (job.pad >= 1 and np.isfinite(job.fudge) and job.fudge > 0):
        raise ContractError(f"{star}: padding {job.pad:g} must be >= 1 and the tau2 fudge "
                            f"{job.fudge:g} > 0.")
    return job


def load_fourier(job, dtype=np.float64):
    """B (complex) and K (real) on the padded half-complex grid, in dtype's precision
    (float64 for the numpy reconstruction; float32, as RELION writes them, for update (17)'s
    numerator term)."""
    arrays = []
    for path in job.all_files():
        try:
            data, _ = read_map(path)
        except MapError as exc:
            raise ContractError(f"RELION's file is unusable: {exc}") from exc
        arrays.append(data.astype(dtype, copy=False))
    re, im, k = arrays
    m = job.padded_size
    expect = (m, m, m // 2 + 1)
    for name, arr in zip(("data_real", "data_imag", "weight"), arrays):
        if arr.shape != expect:
            raise ContractError(f"{name} has shape {arr.shape}, expected {expect} for box "
                                f"{job.ori_size} at padding {job.pad:g}.")
    b = np.empty(re.shape, dtype=np.complex64 if dtype == np.float32 else np.complex128)
    b.real, b.imag = re, im
    return b, k


def write_result(job, vol, pixel_size=0.0):
    write_map(job.result, vol, pixel_size)


def cleanup(job):
    """Remove RELION's large intermediate files (RELION never deletes them)."""
    for path in job.all_files():
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
