"""Simulation: atomic model to potential map, particle images with CTF and noise."""
