"""The training structure set (offline sources, selection rule, manifest) and the reserved-structure guard."""
