"""The gateway source: the ALCF Inference Service gateway with Globus tokens. The only package that imports globus_sdk (and only in its globus module, never on the hot path)."""
