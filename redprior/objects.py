"""Data objects of the redprior plugin.

Scipion's mapper rebuilds custom EMObject subclasses only from this module, so every
persistent object the plugin defines (e.g. a trained denoiser model) must live here.
The simulate protocol only produces standard pwem objects (Volume, SetOfParticles).
"""
