"""Stand-ins for the ALCF login node, for the test suite and for ``metis-env demo``."""

from .loginnode import Faults, LoginNode, hotp, totp

__all__ = ["Faults", "LoginNode", "hotp", "totp"]
