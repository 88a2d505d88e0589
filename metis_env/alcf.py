"""ALCF's production identifiers: the Inference Service's hosts, its Globus registration and policy.

Read from alcf-tokens 0.4.0 (``alcf_tokens/auth.py``) and the gateway's deployment; the stand-in in
``metis_env.testing.globus_standin`` serves exactly these, so a test and production differ only in
URLs. A leaf: it imports nothing at all, so settings and the hot path may import it.
"""

# The Globus resource server of the ALCF Inference Service, and the one scope it accepts.
INFERENCE_RESOURCE_SERVER = "681c10cc-f684-4540-bcd7-0b4df3bc26ef"
INFERENCE_SCOPE = "https://auth.globus.org/scopes/681c10cc-f684-4540-bcd7-0b4df3bc26ef/action_all"

# The high-assurance session policy a login must satisfy (session_required_policies).
INFERENCE_SESSION_POLICY = "83732ff2-9c42-4548-b5ce-17e498c84f6a"

# The public native-app client alcf-tokens logs in with (the default of the globus_client_id setting).
ALCF_TOKENS_CLIENT_ID = "7f3e61f5-e0de-4e8f-9150-0a62c65dda63"

# Globus Auth's own resource server: where the openid/profile/email token and the id_token come from.
AUTH_RESOURCE_SERVER = "auth.globus.org"

DEFAULT_GATEWAY_URL = "https://inference-api.alcf.anl.gov/resource_server/"

DEFAULT_HOST = "sambanova.alcf.anl.gov"
"""The login node ``sync`` reaches over SSH (the default of the ``host`` setting)."""
