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


def readParticlesStar(star, parts, pixel):
    """Fill a SetOfParticles from a RELION particle STAR whose image paths are relative to the
    STAR's folder (as RELION writes them); scipion-em-relion's reader handles optics groups,
    CTF and the ALIGN_PROJ convention."""
    from pwem.constants import ALIGN_PROJ
    from relion.convert import readSetOfParticles
    folder = os.path.dirname(star)

    def fixPath(particle, row):
        index, fn = particle.getLocation()
        if not os.path.isabs(fn):
            particle.setLocation(index, os.path.join(folder, fn))

    readSetOfParticles(star, parts, alignType=ALIGN_PROJ, postprocessImageRow=fixPath)
    parts.setSamplingRate(pixel)


def mapsProblems(maps, pixel):
    """Messages for maps [(name, path, pixel size or None)] that cannot be compared with the
    first one (missing, unreadable, not cubic, another box or pixel size); [] if fine."""
    errors = []
    ref_name, ref_path, _ = maps[0]
    ref_shape = None
    for name, path, map_pixel in maps:
        if not path or not os.path.exists(path):
            errors.append('The %s file %s does not exist. Check the input (was the '
                          'refinement moved or deleted?).' % (name, path))
            continue
        shape = mapShape(path)
        if shape is None:
            errors.append('The %s file %s cannot be read as a map.' % (name, path))
            continue
        if len(set(shape)) != 1:
            errors.append('The %s is not cubic (%s); validation needs cubic maps.'
                          % (name, 'x'.join(map(str, shape))))
        if ref_shape is None:
            ref_shape = shape
        elif shape != ref_shape:
            errors.append('Box mismatch: the %s is %s px but %s is %s px. Resize or crop '
                          'the %s to %d px (same pixel size) before validating.'
                          % (name, 'x'.join(map(str, shape)), ref_name,
                             'x'.join(map(str, ref_shape)), name, ref_shape[0]))
        if map_pixel and pixel and abs(map_pixel - pixel) > 0.01 * pixel:
            errors.append('Pixel size mismatch: the %s is %.4g A/px and the refined map '
                          '%.4g A/px. Rescale the %s to %.4g A/px (or fix its sampling '
                          'rate on import if the header is wrong).'
                          % (name, map_pixel, pixel, name, pixel))
    return errors


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
