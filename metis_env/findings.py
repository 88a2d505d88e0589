"""What a diagnosis returns: ``Finding`` (a name, a status, a one-line message and, unless all is well,
a one-line fix) and its three statuses. doctor, the gateway's diagnosis and configure's drift check all
return Findings; a leaf, so that none of them imports another for the type.

Example::

    Finding("keyring", WARN, "the keyring is locked", "unlock it").line()
    # 'warn     keyring: the keyring is locked; fix: unlock it'
"""

from __future__ import annotations

from collections import namedtuple

OK, WARN, PROBLEM = "ok", "warn", "problem"
STATUSES = (OK, WARN, PROBLEM)


class Finding(namedtuple("Finding", "name status message fix", defaults=("",))):
    """One thing a diagnosis looked at: ``name``, ``status`` (one of STATUSES), ``message``; ``fix`` is
    empty when there is nothing to do."""

    __slots__ = ()

    def line(self) -> str:
        text = f"{self.status:<7}  {self.name}: {self.message}"
        return f"{text}; fix: {self.fix}" if self.fix and self.status != OK else text

    def to_dict(self) -> dict[str, str]:
        """``{"name", "status", "message", "fix"}``: doctor's ``--json`` form."""
        return dict(self._asdict())
