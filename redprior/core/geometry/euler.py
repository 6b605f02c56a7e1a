"""RELION's Euler angles (rot, tilt, psi; degrees, ZYZ) and uniform random orientations.

A pose is the matrix A = euler_to_matrix(rot, tilt, psi) that rotates map coordinates into the
image frame (RELION's Euler_angles2matrix): image(x, y) = sum_z V(A^T (x, y, z)).
"""
import numpy as np


def euler_to_matrix(rot, tilt, psi):
    """RELION's Euler_angles2matrix for arrays of angles (degrees) -> (n, 3, 3)."""
    a, b, g = (np.deg2rad(np.atleast_1d(np.asarray(x, dtype=np.float64)))
               for x in (rot, tilt, psi))
    a, b, g = np.broadcast_arrays(a, b, g)
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    R = np.empty(a.shape + (3, 3))
    R[..., 0, 0] = cg * cc - sg * sa
    R[..., 0, 1] = cg * cs + sg * ca
    R[..., 0, 2] = -cg * sb
    R[..., 1, 0] = -sg * cc - cg * sa
    R[..., 1, 1] = -sg * cs + cg * ca
    R[..., 1, 2] = sg * sb
    R[..., 2, 0] = sc
    R[..., 2, 1] = ss
    R[..., 2, 2] = cb
    return R.reshape(-1, 3, 3)


def matrix_to_euler(R):
    """Inverse of euler_to_matrix: (n,3,3) or (3,3) -> (rot, tilt, psi) arrays, tilt in [0,180]."""
    R = np.asarray(R, dtype=np.float64).reshape(-1, 3, 3)
    sb = np.hypot(R[:, 0, 2], R[:, 1, 2])
    regular = sb > 1e-6
    rot = np.where(regular, np.arctan2(R[:, 2, 1], R[:, 2, 0]), 0.0)
    tilt = np.arctan2(sb, R[:, 2, 2])
    psi = np.where(regular, np.arctan2(R[:, 1, 2], -R[:, 0, 2]), 0.0)
    # tilt 0 or 180: only rot+psi (or psi-rot) is defined; put it all in psi like RELION
    up = ~regular & (R[:, 2, 2] > 0)
    down = ~regular & (R[:, 2, 2] <= 0)
    psi = np.where(up, np.arctan2(-R[:, 1, 0], R[:, 0, 0]), psi)
    psi = np.where(down, np.arctan2(R[:, 1, 0], -R[:, 0, 0]), psi)
    tilt = np.where(up, 0.0, np.where(down, np.pi, tilt))
    return np.rad2deg(rot), np.rad2deg(tilt), np.rad2deg(psi)


def uniform_rotations(n, rng):
    """n orientations uniform on SO(3): rot, psi uniform, cos(tilt) uniform (Haar measure)."""
    rng = np.random.default_rng(rng)
    rot = rng.uniform(-180.0, 180.0, n)
    tilt = np.rad2deg(np.arccos(rng.uniform(-1.0, 1.0, n)))
    psi = rng.uniform(-180.0, 180.0, n)
    return rot, tilt, psi
