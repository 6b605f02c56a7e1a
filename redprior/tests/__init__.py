"""Tests of the redprior plugin (pytest or `scipion test redprior.tests.<module>`)."""
