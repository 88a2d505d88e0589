"""metis-env: ALCF Metis inference endpoint credentials, synced once, used from any shell."""

__version__ = "0.1.0"
