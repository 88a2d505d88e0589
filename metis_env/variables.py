"""The variables ``export``, ``run`` and the Python API set, in the order export prints them, and the
``aliases`` setting that adds names to them. Pure: strings and mappings in, a dict out; below
``settings`` (which checks ``aliases`` with ``parse_aliases``), standard library only.

Example::

    environment("https://h/v1/", "sk-...", "m", "1", aliases=[("GROQ_API_KEY", "OPENAI_API_KEY")])
"""

from __future__ import annotations


from .errors import UsageError
from .reserved_variables import why_reserved

# annotations only (PEP 563): `collections` costs every shell start-up
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

EXPORTED_NAMES = (
    "OPENAI_BASE_URL",
    "OPENAI_API_BASE",
    "OPENAI_API_KEY",
    "MODEL_NAME",
    "SAMBANOVA_API_KEY",
    "SAMBANOVA_API_BASE",
    "SAMBA_NOVA_BASE_URL",
    "ALCF_AI_TOKEN",
    "OPENAI_AGENTS_DISABLE_TRACING",
    "LITELLM_LOCAL_MODEL_COST_MAP",
    "METIS_ENV_ENDPOINT",
    "METIS_ENV_TOKEN_EXPIRES",
)
"""Every variable export can set, in the order it prints them (``--unset`` removes them all, and the
names of the ``aliases`` setting)."""


def environment(base_url: str, api_key: str, model: str, endpoint_id: str, *, expires_at: str | None = None,
                sambanova: bool = True, aliases: Sequence[tuple[str, str]] = ()) -> dict[str, str]:
    """The variables for one endpoint and model: the openai client's names, the centre's own, and the
    ``aliases`` (``[(NEW, EXPORTED), ...]``, from ``parse_aliases``).

    Wherever the key goes out under a name some client reads, the base URL goes out under the names
    that client reads too: the SambaNova SDK, langchain-sambanova and litellm's ``sambanova/`` read
    ``SAMBANOVA_API_KEY`` but default to SambaNova's public cloud, so without ``SAMBANOVA_API_BASE``
    and ``SAMBA_NOVA_BASE_URL`` the Metis key would be sent there. ``sambanova``: whether the key is
    one SambaNova's clients may use at all (a Globus token under SambaNova's name would mislead).
    openai-agents uploads traces to OpenAI's own host with ``OPENAI_API_KEY`` unless tracing is
    disabled, and litellm downloads its price list from GitHub at import (no key, but a host other
    than the endpoint's, and a hang on a compute node with no route out) unless told to use the copy
    it ships. ``expires_at`` (ISO 8601 UTC) goes out as aws-vault's AWS_CREDENTIAL_EXPIRATION does.
    """
    env = {
        "OPENAI_BASE_URL": base_url,
        "OPENAI_API_BASE": base_url,  # LangChain, aider, litellm and older scripts
        "OPENAI_API_KEY": api_key,
        "MODEL_NAME": model,
    }
    if sambanova:
        env["SAMBANOVA_API_KEY"] = api_key
        env["SAMBANOVA_API_BASE"] = base_url
        env["SAMBA_NOVA_BASE_URL"] = base_url
    else:  # the name ALCF's own docs configure opencode and codex with
        env["ALCF_AI_TOKEN"] = api_key
    env["OPENAI_AGENTS_DISABLE_TRACING"] = "1"
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env["METIS_ENV_ENDPOINT"] = endpoint_id
    if expires_at is not None:
        env["METIS_ENV_TOKEN_EXPIRES"] = expires_at
    for alias, name in aliases:
        if name in env:
            env[alias] = env[name]
    return env


def parse_aliases(text: str, source: str) -> list[tuple[str, str]]:
    """``aliases`` (``NEW=EXISTING`` pairs, comma-separated) -> [(NEW, EXISTING), ...]; UsageError
    naming ``source`` for a pair that is not a variable name and one export sets."""
    pairs = []
    for item in text.split(","):
        if not item.strip():
            continue
        alias, eq, name = (part.strip() for part in item.partition("="))
        if not eq or not is_variable_name(alias) or name not in EXPORTED_NAMES or alias in EXPORTED_NAMES:
            raise UsageError(
                f"{source}: {item.strip()!r} is not NEW_NAME=EXPORTED_NAME (a new variable name, then one of: "
                f"{', '.join(EXPORTED_NAMES)}); e.g. GROQ_API_KEY=OPENAI_API_KEY"
            )
        reason = why_reserved(alias)
        if reason is not None:
            raise UsageError(f"{source}: {alias} cannot be an alias: {reason}; use a name of your own, e.g. GROQ_API_KEY=OPENAI_API_KEY")
        pairs.append((alias, name))
    return pairs


def every_exported_name(aliases: str | None) -> tuple[str, ...]:
    """Every name export may set: EXPORTED_NAMES, then the ``aliases`` setting's new names. What
    ``--unset`` removes, and what an export of one endpoint removes where it sets nothing."""
    return EXPORTED_NAMES + tuple(alias for alias, _name in parse_aliases(aliases or "", "aliases"))


def is_variable_name(name: str) -> bool:
    """A name every shell accepts for a variable: ASCII letters, digits and ``_``, not starting with a digit."""
    return bool(name) and not name[0].isdigit() and all(c.isascii() and (c.isalnum() or c == "_") for c in name)
