"""oremap: mineral prospectivity mapping with deep-learning ensembles."""

__version__ = "0.1.0"
