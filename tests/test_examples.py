"""examples/: ALCF's seed example ships in the repository, and the demo runs the very same text."""

from __future__ import annotations

from metis_env.demo import CHAT_SCRIPT
from tests.conftest import REPO


def test_the_demo_runs_the_example_the_repository_ships():
    assert CHAT_SCRIPT == (REPO / "examples" / "chat_completion.py").read_text()


def test_the_shipped_example_is_the_seed_pages_script_unchanged():
    seed = (REPO.parent / "shared" / "seed" / "using-inference-endpoint.md")
    shipped = (REPO / "examples" / "chat_completion.py").read_text()
    if seed.exists():  # beside the checkout on the project's machines, not in a user's clone
        text = seed.read_text()
        block = text.split("```python\n", 1)[1].split("```", 1)[0]
        assert shipped == block
    assert shipped.splitlines()[-1] == "print(response.choices[0].message.content)"
