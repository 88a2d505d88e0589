"""`metis-env status` and the warning export/run give from what it saw, through the real CLI, with
endpoint files against the loopback OpenAI stub (gateway endpoints: tests/test_gateway_cli.py)."""

from __future__ import annotations

import json
import re
import sys

import pytest

from metis_env.testing.openai_server import OpenAIStubServer
from tests.conftest import metis

KEY_1, KEY_2 = "sk-status-one-0a1b2c3d4e5f", "sk-status-two-6a7b8c9d0e1f"


@pytest.fixture
def stored(file_store, tmp_path):
    """Endpoint 1 serves DeepSeek-R1; endpoint 2's file lists two models, its server one of them."""
    one = OpenAIStubServer(KEY_1, ["DeepSeek-R1"])
    two = OpenAIStubServer(KEY_2, ["Llama-3.3-70B-Instruct"])
    urls = one.start(), two.start()
    files = []
    for number, (url, key, models) in enumerate(
        ((urls[0], KEY_1, "DeepSeek-R1"), (urls[1], KEY_2, "Llama-4-Maverick-17B-128E-Instruct,Llama-3.3-70B-Instruct")), 1
    ):
        path = tmp_path / f"metis_endpoint_{number}.txt"
        path.write_text(f"BASE_URL={url}/\nSAMBANOVA_API_KEY={key}\nMODELS={models}\n")
        files.append(str(path))
    assert metis("import", *files).returncode == 0
    yield one, two
    one.stop()
    two.stop()


TABLE = (
    "ENDPOINT  MODEL                               STATUS\n"
    "1         DeepSeek-R1                         live\n"
    "2         Llama-4-Maverick-17B-128E-Instruct  offline\n"
    "2         Llama-3.3-70B-Instruct              live\n"
)


def run(*args: str):
    """(exit code, stdout, stderr), with the age of a cached status written as N (it depends on the machine's load)."""
    result = metis(*args)
    return result.returncode, result.stdout.decode(), re.sub(r"\(\d+ s ago\)", "(N s ago)", result.stderr.decode())


def test_status_of_every_endpoint(stored):
    assert run("status") == (0, TABLE, "")


def test_status_of_one_endpoint_as_json(stored):
    code, out, err = run("status", "2", "--json")
    data = json.loads(out)
    assert (code, err, data["version"], [(e["endpoint"], e["status"], e["maintenance"], e["models"]) for e in data["endpoints"]]) == (
        0, "", 1, [("2", "ok", False, {"Llama-4-Maverick-17B-128E-Instruct": "offline", "Llama-3.3-70B-Instruct": "live"})]
    )


def test_export_and_run_warn_from_the_last_status_and_never_ask_the_network(stored):
    one, two = stored
    assert run("status")[0] == 0
    asked = len(one.requests) + len(two.requests)
    warning = (
        "metis-env: warning: model 'Llama-4-Maverick-17B-128E-Instruct' of endpoint 2 was offline at the last status "
        "(N s ago); requests may fail until it is live: metis-env status 2\n"
    )
    code, out, err = run("export", "2", "--shell", "sh")
    assert (code, err) == (0, warning)
    assert "OPENAI_API_KEY='sk-status-two-6a7b8c9d0e1f'" in out
    assert run("run", "2", "--", sys.executable, "-c", "pass") == (0, "", warning)
    assert run("export", "2", "--model", "Llama-3.3-70B-Instruct", "--shell", "sh")[2] == ""
    assert run("export", "1", "--shell", "sh")[2] == ""
    assert len(one.requests) + len(two.requests) == asked  # export and run read the cache, nothing else


def test_check_feeds_the_cache_too(stored):
    one, _ = stored
    one.models = ()  # endpoint 1 stops serving DeepSeek-R1, the model export picks: check fails (21)
    assert run("check", "1")[0] == 21
    assert run("export", "1", "--shell", "sh")[2] == (
        "metis-env: warning: model 'DeepSeek-R1' of endpoint 1 was offline at the last check (N s ago); requests may "
        "fail until it is live: metis-env status 1\n"
    )


def test_an_old_status_is_ignored(stored, env_setup):
    assert run("status")[0] == 0
    path = env_setup / "status.json"
    data = json.loads(path.read_text())
    for entry in data["endpoints"].values():
        entry["checked_at"] -= 3600
    path.write_text(json.dumps(data))
    assert run("export", "2", "--shell", "sh")[2] == ""


def test_a_failing_endpoint_is_shown_and_gives_the_exit_code(stored):
    one, _ = stored
    one.rotate_key("sk-rotated-elsewhere-000000")
    code, out, err = run("status")
    assert (code, out) == (12, TABLE.replace("DeepSeek-R1                         live", "DeepSeek-R1                         unknown (unauthorized)"))
    assert err.startswith("metis-env: error: status of endpoint 1: ") and err.endswith("the key may have rotated: run `metis-env sync`\n")


def test_status_with_nothing_stored(file_store):
    assert run("status") == (3, "", "metis-env: error: no endpoints are stored yet; run metis-env sync (endpoint files over SSH) or metis-env login (the ALCF gateway), or metis-env import FILE\n")
