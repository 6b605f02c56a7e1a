"""Fourier space: the one frequency grid, filters and resampling, FSC and its resolution."""
