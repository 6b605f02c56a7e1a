"""Soft masks for masked FSCs (solvent masks with a raised-cosine edge)."""
import numpy as np
from scipy import ndimage

from redprior.core.fourier.filters import lowpass
from redprior.core.fourier.grid import real_radius


def soft_edge(binary, width_px):
    """Raised-cosine edge of `width_px` voxels outside a binary mask (1 inside)."""
    if width_px <= 0:
        return binary.astype(np.float32)
    dist = ndimage.distance_transform_edt(~binary)
    edge = 0.5 + 0.5 * np.cos(np.pi * np.clip(dist / width_px, 0, 1))
    return np.where(binary, 1.0, np.where(dist < width_px, edge, 0.0)).astype(np.float32)


def solvent_mask(vol, pixel_size, lowpass_A=15.0, threshold=0.1, extend_px=3, soft_px=5):
    """Solvent mask from a map: low-pass, threshold at `threshold` x max, dilate, soft edge.

    The same recipe as relion_mask_create (--ini_threshold, --extend_inimask,
    --width_soft_edge), with the threshold relative to the map's maximum so it works on any
    scale.
    """
    smooth = lowpass(vol, pixel_size, lowpass_A)
    binary = smooth > threshold * float(smooth.max())
    if extend_px > 0:
        binary = ndimage.binary_dilation(binary, iterations=int(extend_px))
    return soft_edge(binary, soft_px)


def spherical_mask(box, radius_px, soft_px=3):
    return soft_edge(real_radius(box) <= radius_px, soft_px)
