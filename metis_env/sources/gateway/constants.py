"""Kept for code written against the old place: ALCF's identifiers live in ``metis_env/alcf.py``."""

from ...alcf import (  # noqa: F401
    ALCF_TOKENS_CLIENT_ID,
    AUTH_RESOURCE_SERVER,
    DEFAULT_GATEWAY_URL,
    INFERENCE_RESOURCE_SERVER,
    INFERENCE_SCOPE,
    INFERENCE_SESSION_POLICY,
)
