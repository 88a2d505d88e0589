"""What the engines' workers run in tests/test_engines_*.py: docs/batch-jobs.md's
recipes with the gateway stand-in behind them.

``chat`` is the recipe's task as a user writes it: ``metis_env.openai_client()`` inside the task,
kept for the worker's lifetime, so that the same client meets the token's expiry; it reads only
what finds the store (``METIS_ENV_CONFIG_DIR``, ``METIS_ENV_STORE``), never a token from its
environment. ``meet`` is a file barrier that makes the tasks of one phase run at the same time in
different workers (a state, never a sleep), so that the expiry is met by several processes at once.
``python -m tests._engine_tasks DIR INDEX`` is a Slurm array task under ``metis-env run --proxy``: the
plain openai client with what run's child environment holds, one call before and one after the test
writes DIR/go.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

MODEL = "gpt-oss-120b"
MESSAGES = [{"role": "user", "content": "What is an extinction vortex?"}]
BARRIER_TIMEOUT = 120.0

_client = None


def meet(folder: str, phase: str, index: int, parties: int) -> None:
    """Wait until ``parties`` tasks of ``phase`` have arrived in ``folder`` (each leaves a file)."""
    Path(folder, f"{phase}-{index}").touch()
    deadline = time.monotonic() + BARRIER_TIMEOUT
    while sum(1 for name in os.listdir(folder) if name.startswith(f"{phase}-")) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only some of {parties} tasks reached {phase}")
        time.sleep(0.02)


def chat(folder: str, phase: str, index: int, parties: int, calls: int = 2) -> tuple[list[str], int]:
    """``calls`` chat completions through this worker's one metis_env client -> (replies, pid)."""
    global _client
    import metis_env

    meet(folder, phase, index, parties)
    if _client is None:
        _client = metis_env.openai_client("metis", max_retries=0)
    replies = [_client.chat.completions.create(model=MODEL, messages=MESSAGES).choices[0].message.content
               for _ in range(calls)]
    return replies, os.getpid()


def run_proxy_task(folder: str, index: str) -> int:
    """A Slurm array task's body: the openai client with run --proxy's environment, before and after go."""
    import openai

    client = openai.OpenAI(max_retries=0)  # OPENAI_BASE_URL and OPENAI_API_KEY: run --proxy's, local
    replies = [client.chat.completions.create(model=os.environ["MODEL_NAME"], messages=MESSAGES).choices[0].message.content]
    Path(folder, f"before-{index}").write_text(str(os.getpid()))
    deadline = time.monotonic() + BARRIER_TIMEOUT
    while not Path(folder, "go").exists():
        if time.monotonic() > deadline:
            return 3
        time.sleep(0.05)
    replies.append(client.chat.completions.create(model=os.environ["MODEL_NAME"], messages=MESSAGES).choices[0].message.content)
    Path(folder, f"after-{index}").write_text("\n".join(replies))
    return 0


if __name__ == "__main__":
    sys.exit(run_proxy_task(sys.argv[1], sys.argv[2]))
