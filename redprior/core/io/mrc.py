"""MRC input/output with the checks a refinement needs (unreadable file, NaN, wrong shape)."""
import os

import mrcfile
import numpy as np

from .atomic import atomic_path


class MapError(ValueError):
    """A map file is unusable; the message names the file, the problem and the fix."""


def read_map(path, allow_nonfinite=False):
    """Read an MRC map or stack as float32 (z, y, x); return (data, pixel_size in A or 0)."""
    if not os.path.exists(path):
        raise MapError(f"Map file {path} does not exist.")
    try:
        # permissive=True so that a header quirk still gives us data; we validate below.
        with mrcfile.open(path, permissive=True) as mrc:
            _check_header(path, mrc)
            if mrc.data is None:
                raise MapError(f"{path} is not a readable MRC file (no data block). "
                               "Re-export the map as MRC (mode 2, float32).")
            data = np.asarray(mrc.data, dtype=np.float32).copy()
            pixel = float(mrc.voxel_size.x)
    except MapError:
        raise
    except Exception as exc:  # mrcfile raises several types for corrupt files
        raise MapError(f"{path} is not a readable MRC file ({exc}). "
                       "Check that the file is complete and in MRC format.") from exc
    if not allow_nonfinite and not np.all(np.isfinite(data)):
        n_bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise MapError(f"{path} contains {n_bad} NaN or infinite values. "
                       "Recompute or replace the map; a refinement cannot start from it.")
    return data, pixel


def _check_header(path, mrc):
    """The header must describe the file: its sizes and mode must account for every byte."""
    from mrcfile.utils import dtype_from_mode

    h = mrc.header
    if h is None:
        return  # not an MRC header at all: reported as unreadable by the caller
    try:
        itemsize = dtype_from_mode(h.mode).itemsize
    except ValueError as exc:
        raise MapError(f"{path}: unknown MRC mode {int(h.mode)} ({exc}). Re-export the map as "
                       "MRC (mode 2, float32).") from exc
    nx, ny, nz = int(h.nx), int(h.ny), int(h.nz)
    expected = 1024 + int(h.nsymbt) + nx * ny * nz * itemsize
    actual = os.path.getsize(path)
    if actual != expected:
        raise MapError(f"{path}: the header says {nx} x {ny} x {nz} voxels of mode {int(h.mode)} "
                       f"({expected} bytes with the header) but the file has {actual} bytes: "
                       "it is truncated or its header is wrong. Re-export the map as MRC.")


def write_map(path, data, pixel_size=0.0):
    """Write float32 data atomically: a temporary file in the same folder, then rename.

    RELION reads the result as soon as the hook returns, and both halves write at the
    same time, so a half-written file must never be visible under the final name.
    """
    with atomic_path(path, suffix=".mrc") as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(data, dtype=np.float32))
            if pixel_size:
                mrc.voxel_size = float(pixel_size)


def check_cube(data, path=""):
    if data.ndim != 3 or len(set(data.shape)) != 1:
        raise MapError(f"{path or 'map'} has shape {data.shape}; a cubic 3D map is required.")
    return data.shape[0]
