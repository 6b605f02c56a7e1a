"""Training data: training pairs and the training structure set with the reserved-structure guard."""
