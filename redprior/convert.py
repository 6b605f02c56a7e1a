"""Scipion <-> core conversions in one place: file names, maps of any format, particle poses.

Conventions:
  * Scipion may append ':mrc' to a file name to force the MRC reader; the core wants the
    plain path;
  * the core reads MRC only: maps in other formats (Spider/Xmipp .vol, ...) are converted
    with pwem's ImageHandler into a folder the caller owns;
  * a projection alignment (ALIGN_PROJ) in Scipion is the 4x4 matrix M with
    inv(M) = [A | -origin_px], A = euler_to_matrix(rot, tilt, psi) the RELION pose
    (relion.convert; checked in test_protocol_simulate), so no Euler angles are needed.
"""
import os

import numpy as np

MRC_EXTENSIONS = ('.mrc', '.map', '.mrcs', '.st', '.ali', '.rec')


# ---- file names and maps ---------------------------------------------------------------
def plainPath(fn):
    """A Scipion file name without its ':mrc' reader suffix."""
    return fn[:-4] if fn and fn.endswith(':mrc') else fn


def volumePath(vol):
    """The plain file name of a Volume (or None for None)."""
    return plainPath(vol.getFileName()) if vol is not None else None


def halfMapPaths(vol):
    """The plain file names of a Volume's two half-maps."""
    return [plainPath(h) for h in vol.getHalfMaps(asList=True)]


def isMrc(path):
    return os.path.splitext(path)[1].lower() in MRC_EXTENSIONS


def mrcPath(path, tmpFolder):
    """`path` itself if it is an MRC file, else an MRC copy made in tmpFolder."""
    path = plainPath(path)
    if isMrc(path):
        return path
    from pwem.emlib.image import ImageHandler
    os.makedirs(tmpFolder, exist_ok=True)
    out = os.path.join(tmpFolder, os.path.basename(path) + '.mrc')
    ImageHandler().convert(path, out)
    return out


def readCube(path, tmpFolder):
    """(data, header pixel size) of a cubic map in any format pwem reads."""
    from redprior.core.io.mrc import check_cube, read_map
    mrc = mrcPath(path, tmpFolder)
    data, pixel = read_map(mrc)
    check_cube(data, mrc)
    return data, pixel


def mapShape(path):
    """(x, y, z) of a map from its header only; None if unreadable."""
    path = plainPath(path)
    if isMrc(path):
        import mrcfile
        try:
            with mrcfile.open(path, header_only=True, permissive=True) as mrc:
                h = mrc.header
                return int(h.nx), int(h.ny), int(h.nz)
        except Exception:  # mrcfile raises several types for corrupt headers
            return None
    try:
        from pwem.emlib.image import ImageHandler
        x, y, z, _ = ImageHandler().getDimensions(path)
        return x, y, z
    except Exception:
        return None


# ---- poses -------------------------------------------------------------------------------
def relionPose(matrix):
    """(RELION pose matrix A, origin in pixels (x, y)) of a Scipion ALIGN_PROJ matrix."""
    inv = np.linalg.inv(np.asarray(matrix, dtype=np.float64))
    return inv[:3, :3], -inv[:2, 3]


def scipionMatrix(A, origin_px):
    """Inverse of relionPose: the 4x4 Scipion ALIGN_PROJ matrix."""
    T = np.eye(4)
    T[:3, :3] = A
    T[:2, 3] = -np.asarray(origin_px, dtype=np.float64)
    return np.linalg.inv(T)


def posesFromSet(parts):
    """(ids, A (n,3,3) RELION pose matrices, origins (n,2) in A) of a SetOfParticles."""
    pixel = parts.getSamplingRate()
    ids, mats = [], []
    for p in parts.iterItems(orderBy='id'):
        ids.append(p.getObjId())
        mats.append(p.getTransform().getMatrix())
    if not mats:
        return np.zeros(0, dtype=int), np.zeros((0, 3, 3)), np.zeros((0, 2))
    inv = np.linalg.inv(np.asarray(mats, dtype=np.float64))
    return np.asarray(ids, dtype=int), inv[:, :3, :3], -inv[:, :2, 3] * pixel
