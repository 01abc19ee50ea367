"""Data: healthy datasets for training and the synthetic OCT phantom (:mod:`.phantom`)."""
