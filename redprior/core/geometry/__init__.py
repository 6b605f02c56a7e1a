"""Geometry: Euler angles, rotations and symmetry, 3D map alignment, masks."""
