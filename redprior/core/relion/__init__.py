"""RELION: the external-reconstruct contract, its reconstruction and RELION's run folders."""
