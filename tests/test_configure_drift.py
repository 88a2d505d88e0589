"""What configure wrote is remembered: doctor reports configs that drifted, and import and sync
rewrite the ones whose endpoint's base URL or models changed (unless the user edited them). The
configs here go straight to the endpoint (--no-proxy), whose base URL they hold; one through the
broker is refreshed too (tests/test_configure_broker.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests._loginnode_fixtures import USER, ScriptedPrompter, make_node, login_home, run_sync_cli  # noqa: F401  (fixtures)
from tests.conftest import ENDPOINT_1, metis

OPENCODE = ".config/opencode/opencode.json"


def home() -> Path:
    return Path(os.environ["HOME"])


def configure_findings() -> list[tuple[str, str, str, str]]:
    proc = metis("doctor", "--json")
    findings = json.loads(proc.stdout)["findings"]
    return [(f["name"], f["status"], f["message"], f["fix"]) for f in findings if f["name"].startswith("configure")]


def base_url(rel: str = OPENCODE) -> str:
    return json.loads((home() / rel).read_text())["provider"]["metis-1"]["options"]["baseURL"]


def import_text(tmp_path: Path, text: str):
    path = tmp_path / "files" / "metis_endpoint_1.txt"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return metis("import", str(path))


def test_doctor_ok_then_edited_then_refused_refresh(file_store, tmp_path):
    assert import_text(tmp_path, ENDPOINT_1).returncode == 0
    assert metis("configure", "opencode", "1", "--no-proxy").returncode == 0
    assert configure_findings() == [
        ("configure opencode", "ok", f"~/{OPENCODE} is set up for endpoint 1 (DeepSeek-R1) and up to date", ""),
    ]
    path = home() / OPENCODE
    path.write_text(path.read_text().replace("https://metis.alcf.anl.gov/v1", "https://mine.example/v1"))
    assert configure_findings() == [
        ("configure opencode", "warn", f"~/{OPENCODE}: the entries for endpoint 1 were edited since metis-env wrote them",
         "metis-env configure opencode 1 --no-proxy (the edited file is backed up first)"),
    ]
    proc = import_text(tmp_path, ENDPOINT_1.replace("/v1/", "/v9/"))
    assert (proc.returncode, proc.stderr.decode()) == (
        0, f"endpoint 1: updated\nconfigure: opencode: ~/{OPENCODE} was changed since metis-env wrote it; not refreshed (run: metis-env configure opencode 1 --no-proxy)\n",
    )
    assert base_url() == "https://mine.example/v1"


def test_import_refreshes_every_config_whose_endpoint_changed(file_store, tmp_path):
    assert import_text(tmp_path, ENDPOINT_1).returncode == 0
    for tool in ("opencode", "pi"):
        assert metis("configure", tool, "1", "--no-proxy").returncode == 0
    proc = import_text(tmp_path, ENDPOINT_1.replace("/v1/", "/v2/"))
    assert (proc.returncode, proc.stderr.decode()) == (
        0,
        "endpoint 1: updated\n"
        f"configure: opencode: refreshed ~/{OPENCODE} for endpoint 1\n"
        "configure: pi: refreshed ~/.pi/agent/models.json for endpoint 1\n",
    )
    assert (base_url(), '"baseUrl": "https://metis.alcf.anl.gov/v2",\n' in (home() / ".pi/agent/models.json").read_text()) == (
        "https://metis.alcf.anl.gov/v2", True,
    )
    assert [f[1] for f in configure_findings()] == ["ok", "ok"]
    assert metis("configure", "opencode", "1", "--no-proxy").stderr.decode().startswith(f"opencode: ~/{OPENCODE} is already up to date")


def test_doctor_says_when_models_changed_and_when_the_file_is_gone(file_store, tmp_path, monkeypatch):
    assert import_text(tmp_path, ENDPOINT_1).returncode == 0
    assert metis("configure", "pi", "1").returncode == 0
    assert metis("configure", "llm", "1").returncode == 0
    # models change behind configure's back (a sync that cannot refresh: here, edit the record instead)
    records = Path(os.environ["METIS_ENV_CONFIG_DIR"]) / "configured.json"
    data = json.loads(records.read_text())
    data["configs"][0]["models"] = ["Old-Model"]
    records.write_text(json.dumps(data))
    (home() / ".config/io.datasette.llm/extra-openai-models.yaml").unlink()
    assert configure_findings() == [
        ("configure pi", "warn", "~/.pi/agent/models.json: endpoint 1's models changed since metis-env wrote it",
         "metis-env configure pi 1 (or metis-env sync)"),
        ("configure llm", "warn", "~/.config/io.datasette.llm/extra-openai-models.yaml (endpoint 1) was removed since metis-env wrote it",
         "metis-env configure llm 1"),
    ]


def test_sync_refreshes_configs_when_the_base_url_changes(make_node, login_home, monkeypatch, capfd, env_setup):  # noqa: F811
    node = make_node()

    def sync() -> tuple[int, str, str]:
        prompter = ScriptedPrompter([node.expected_code])
        return run_sync_cli(monkeypatch, capfd, prompter, "--host", "127.0.0.1", "--port", str(node.port), "--user", USER)

    assert sync()[0] == 0
    assert metis("configure", "opencode", "1", "--no-proxy").returncode == 0
    (login_home / "metis_endpoint_1.txt").write_text(ENDPOINT_1.replace("/v1/", "/v3/"))
    code, out, err = sync()
    assert (code, out, err.splitlines()[-3:]) == (
        0, "", ["endpoint 1: updated", "endpoint 2: unchanged", f"configure: opencode: refreshed ~/{OPENCODE} for endpoint 1"],
    )
    assert base_url() == "https://metis.alcf.anl.gov/v3"


def test_a_refresh_moves_pis_default_off_a_model_that_is_gone_and_leaves_a_default_of_yours(file_store, tmp_path):
    two = ENDPOINT_1.replace("MODELS=DeepSeek-R1", "MODELS=DeepSeek-R1,Llama-3.3-70B-Instruct")
    assert import_text(tmp_path, two).returncode == 0
    assert metis("configure", "pi", "1", "--model", "Llama-3.3-70B-Instruct").returncode == 0
    settings = home() / ".pi/agent/settings.json"
    assert import_text(tmp_path, ENDPOINT_1).returncode == 0
    assert json.loads(settings.read_text()) == {"defaultProvider": "metis-1", "defaultModel": "DeepSeek-R1"}
    settings.write_text('{"defaultProvider": "openai", "defaultModel": "gpt-5"}\n')
    assert import_text(tmp_path, two).returncode == 0
    assert settings.read_text() == '{"defaultProvider": "openai", "defaultModel": "gpt-5"}\n'
