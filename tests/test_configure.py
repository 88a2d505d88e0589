"""`metis-env configure TOOL`: what each tool's file holds, merging into the user's own, idempotence,
the diff, backups, and every bad input as one line with exit 22 (or 2) and the file untouched.

The real tools read these files in tests/test_configure_tools.py."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tests.conftest import metis

BASE = "https://metis.alcf.anl.gov/v1"  # ENDPOINT_1's BASE_URL, without the trailing slash
KEY = "sk-test-one-0123456789abcdef"
BEGIN = "# >>> metis-env metis-1 (written by metis-env configure; edits here are replaced) >>>\n"
END = "# <<< metis-env metis-1 <<<\n"

FRESH = {
    "opencode": (
        ".config/opencode/opencode.json",
        '{\n  "$schema": "https://opencode.ai/config.json",\n  "provider": {\n    "metis-1": {\n'
        '      "npm": "@ai-sdk/openai-compatible",\n      "name": "ALCF Metis (metis-env endpoint 1)",\n'
        f'      "options": {{\n        "baseURL": "{BASE}",\n        "apiKey": "{{env:OPENAI_API_KEY}}"\n      }},\n'
        '      "models": {\n        "DeepSeek-R1": {\n          "name": "DeepSeek-R1"\n        }\n      }\n    }\n  }\n}\n',
    ),
    "llm": (
        ".config/io.datasette.llm/extra-openai-models.yaml",
        BEGIN + "- model_id: metis-1/DeepSeek-R1\n  model_name: DeepSeek-R1\n"
        "  api_key_name: metis-1\n  can_stream: true\n" + END,
    ),
    "aider": (".aider.conf.yml", BEGIN + "model: openai/DeepSeek-R1\n" + END),
    "pi": (
        ".pi/agent/models.json",
        '{\n  "providers": {\n    "metis-1": {\n'
        f'      "baseUrl": "{BASE}",\n      "api": "openai-completions",\n      "apiKey": "!metis-env get key 1",\n'
        '      "compat": {\n        "supportsDeveloperRole": false,\n        "supportsReasoningEffort": false\n      },\n'
        '      "models": [\n        {\n          "id": "DeepSeek-R1",\n          "name": "DeepSeek-R1"\n        }\n      ]\n'
        "    }\n  }\n}\n",
    ),
    "codex": (
        ".codex/config.toml",
        f'[model_providers.metis-1]\nname = "ALCF Metis (metis-env endpoint 1)"\nbase_url = "{BASE}"\nwire_api = "responses"\n\n'
        '[model_providers.metis-1.auth]\ncommand = "metis-env"\nargs = ["get", "key", "1"]\ntimeout_ms = 30000\nrefresh_interval_ms = 300000\n',
    ),
    "claude": (
        ".claude/settings.json",
        '{\n  "apiKeyHelper": "metis-env get key 1",\n  "env": {\n    "ANTHROPIC_BASE_URL": "https://metis.alcf.anl.gov",\n'
        '    "ANTHROPIC_MODEL": "DeepSeek-R1",\n    "CLAUDE_CODE_API_KEY_HELPER_TTL_MS": "300000"\n  }\n}\n',
    ),
}

USAGE = {
    "opencode": "opencode run -m metis-1/DeepSeek-R1 'hi'",
    "llm": "llm -m metis-1/DeepSeek-R1 'hi'",  # metis-env's llm plugin is beside llm here
    "aider": "metis-env run 1 -- aider",
    "pi": "pi --provider metis-1 --model DeepSeek-R1 -p 'hi'",
    "codex": "codex -c model_provider=metis-1 -m DeepSeek-R1 exec 'hi'",
    "claude": "claude -p 'hi'",
}


PLUGIN_REL = ".config/opencode/plugins/metis-env.js"


PI_SETTINGS_REL = ".pi/agent/settings.json"
PI_SETTINGS = '{\n  "defaultProvider": "metis-1",\n  "defaultModel": "DeepSeek-R1"\n}\n'


def extra_diff(tool: str) -> str:
    """opencode also gets its key plugin (a file wholly metis-env's), pi its default provider."""
    from metis_env.configure.opencode import PLUGIN

    return {"opencode": diff_new(PLUGIN_REL, PLUGIN), "pi": diff_new(PI_SETTINGS_REL, PI_SETTINGS)}.get(tool, "")


def extra_wrote(tool: str) -> str:
    return {"opencode": f"{tool}: wrote ~/{PLUGIN_REL}\n", "pi": f"{tool}: wrote ~/{PI_SETTINGS_REL}\n"}.get(tool, "")


ROUTES = ["/v1/chat/completions", "/v1/responses", "/v1/messages"]


def as_gateway_cluster(endpoint_id: str, routes=ROUTES, capabilities=None) -> None:
    """Make a stored endpoint look as a gateway cluster's record does (``extra.routes``, and
    ``extra.capabilities`` when given, as discovery writes them): codex and claude need the routes."""
    path = Path(os.environ["METIS_ENV_CONFIG_DIR"]) / "endpoints.yaml"
    data = json.loads(path.read_text())
    record = data["endpoints"][endpoint_id]
    record["source"] = "gateway"
    record.setdefault("extra", {})
    if routes is not None:
        record["extra"]["routes"] = list(routes)
    if capabilities is not None:
        record["extra"]["capabilities"] = capabilities
    path.write_text(json.dumps(data))


@pytest.fixture
def stored(file_store, endpoint_files):
    """Endpoint 1, as a gateway cluster that serves every route (codex and claude need theirs)."""
    assert metis("import", str(endpoint_files[0])).returncode == 0
    as_gateway_cluster("1")


def home() -> Path:
    return Path(os.environ["HOME"])


def diff_new(rel: str, text: str) -> str:
    lines = text.splitlines(keepends=True)
    return f"--- /dev/null\n+++ ~/{rel}\n@@ -0,0 +1,{len(lines)} @@\n" + "".join("+" + line for line in lines)


def run(*args: str, env: dict | None = None) -> tuple[int, str, str]:
    proc = metis(*args, env=env)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def no_key_anywhere(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file() and "keys.json" not in path.name:
            assert KEY not in path.read_text(errors="replace"), path


# --- a fresh config: the whole file, the diff, then a second run that changes nothing ------------


@pytest.mark.parametrize("tool", sorted(FRESH))
def test_fresh_config_then_a_second_run_changes_nothing(tool, stored, tmp_path):
    rel, text = FRESH[tool]
    assert run("configure", tool, "1") == (
        0, "", diff_new(rel, text) + extra_diff(tool) + f"{tool}: wrote ~/{rel}\n" + extra_wrote(tool) + f"{tool}: use it: {USAGE[tool]}\n"
    )
    path = home() / rel
    assert (path.read_text(), stat.S_IMODE(path.stat().st_mode)) == (text, 0o600)
    assert run("configure", tool, "1") == (0, "", f"{tool}: ~/{rel} is already up to date; nothing changed\n{tool}: use it: {USAGE[tool]}\n")
    assert (path.read_text(), sorted(p.name for p in path.parent.iterdir())) == (text, sorted([path.name, *{"opencode": ["plugins"], "pi": ["settings.json"]}.get(tool, [])]))
    no_key_anywhere(home())
    no_key_anywhere(tmp_path / "config")


@pytest.mark.parametrize("tool", sorted(FRESH))
def test_dry_run_shows_the_diff_and_writes_nothing(tool, stored, env_setup):
    rel, text = FRESH[tool]
    assert run("configure", tool, "1", "--dry-run") == (
        0, "", diff_new(rel, text) + extra_diff(tool) + f"{tool}: --dry-run: ~/{rel} was not changed\n{tool}: use it: {USAGE[tool]}\n"
    )
    assert (os.path.lexists(home() / rel), (env_setup / "configured.json").exists(), (home() / PLUGIN_REL).exists()) == (False, False, False)


# --- where each tool looks: its own variables -----------------------------------------------------


@pytest.mark.parametrize(
    "tool, variable, value, expected",
    [
        ("opencode", "OPENCODE_CONFIG", "{tmp}/oc/custom.json", "{tmp}/oc/custom.json"),
        ("opencode", "XDG_CONFIG_HOME", "{tmp}/xdg", "{tmp}/xdg/opencode/opencode.json"),
        ("llm", "LLM_USER_PATH", "{tmp}/llm", "{tmp}/llm/extra-openai-models.yaml"),
        ("llm", "XDG_CONFIG_HOME", "{tmp}/xdg", "{tmp}/xdg/io.datasette.llm/extra-openai-models.yaml"),
        ("pi", "PI_CODING_AGENT_DIR", "~/pi-agent", "{home}/pi-agent/models.json"),
        ("codex", "CODEX_HOME", "{tmp}/codex", "{tmp}/codex/config.toml"),
    ],
)
def test_the_tools_own_variables_say_where(tool, variable, value, expected, stored, tmp_path):
    fill = {"tmp": str(tmp_path), "home": str(home())}
    code, _out, _err = run("configure", tool, "1", env={variable: value.format(**fill)})
    assert (code, Path(expected.format(**fill)).read_text()) == (0, FRESH[tool][1])


def test_opencode_prefers_an_existing_jsonc(stored):
    folder = home() / ".config/opencode"
    folder.mkdir(parents=True)
    (folder / "opencode.jsonc").write_text("{}\n")
    assert run("configure", "opencode", "1")[0] == 0
    assert (sorted(p.name for p in folder.iterdir()), json.loads((folder / "opencode.jsonc").read_text())["provider"]["metis-1"]["npm"]) == (
        ["opencode.jsonc", "opencode.jsonc.metis-env.bak", "plugins"], "@ai-sdk/openai-compatible"
    )


# --- the user's own settings: kept byte for byte ----------------------------------------------------

OPENCODE_USER = """{
  // my own setup
  "$schema": "https://opencode.ai/config.json",
  "model": "anthropic/claude-sonnet-4",
  "provider": {
    "ollama": {
      "npm": "@ai-sdk/openai-compatible",   /* local */
      "options": { "baseURL": "http://localhost:11434/v1" },
      "models": { "llama3": {} },
    },
  },
}
"""
PI_USER = '{\n\t"providers": {\n\t\t"ollama": {"baseUrl": "http://localhost:11434/v1", "api": "openai-completions", "apiKey": "ollama", "models": [{"id": "llama3"}]}\n\t}\n}\n'
CODEX_USER = """# codex settings
model = "gpt-5"

[model_providers.ollama]
name = "Ollama"
base_url = "http://localhost:11434/v1"

# my sandbox
[sandbox_workspace_write]
network_access = false
"""
LLM_USER = "# my models\n- model_id: local-llama\n  model_name: llama3\n  api_base: http://localhost:11434/v1\n"
AIDER_USER = "# aider\nmodel: gpt-4o\ndark-mode: true\nauto-commits: false\n"


@pytest.mark.parametrize(
    "tool, rel, original, expected",
    [
        (
            "opencode", ".config/opencode/opencode.json", OPENCODE_USER,
            OPENCODE_USER.replace(
                '      "models": { "llama3": {} },\n    },\n',
                '      "models": { "llama3": {} },\n    },\n    "metis-1": '
                + json.dumps(json.loads(FRESH["opencode"][1])["provider"]["metis-1"], indent="  ").replace("\n", "\n    ")
                + ",\n",
            ),
        ),
        (
            "pi", ".pi/agent/models.json", PI_USER,
            PI_USER.replace(
                '"models": [{"id": "llama3"}]}\n',
                '"models": [{"id": "llama3"}]},\n\t\t"metis-1": '
                + json.dumps(json.loads(FRESH["pi"][1])["providers"]["metis-1"], indent="\t").replace("\n", "\n\t\t")
                + "\n",
            ),
        ),
        ("codex", ".codex/config.toml", CODEX_USER, CODEX_USER + "\n" + FRESH["codex"][1]),
        ("llm", ".config/io.datasette.llm/extra-openai-models.yaml", LLM_USER, LLM_USER + FRESH["llm"][1]),
        (
            "aider", ".aider.conf.yml", AIDER_USER,
            "# aider\n# model: gpt-4o  # disabled by metis-env configure (see the metis-env block below)\n"
            "dark-mode: true\nauto-commits: false\n" + FRESH["aider"][1],
        ),
    ],
)
def test_the_users_own_entries_are_kept_byte_for_byte(tool, rel, original, expected, stored):
    path = home() / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(original)
    os.chmod(path, 0o640)
    code, out, err = run("configure", tool, "1")
    assert (code, out, err.splitlines()[-2:]) == (
        0, "", [extra_wrote(tool).rstrip("\n") or f"{tool}: wrote ~/{rel} (backup: ~/{rel}.metis-env.bak)", f"{tool}: use it: {USAGE[tool]}"]
    )
    assert path.read_text() == expected
    backup = Path(str(path) + ".metis-env.bak")
    assert (backup.read_text(), stat.S_IMODE(path.stat().st_mode), stat.S_IMODE(backup.stat().st_mode)) == (original, 0o640, 0o640)
    assert run("configure", tool, "1")[2].startswith(f"{tool}: ~/{rel} is already up to date; nothing changed\n")
    assert (path.read_text(), sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name))) == (
        expected, [path.name, path.name + ".metis-env.bak"]
    )


def test_pi_becomes_the_default_and_the_users_other_settings_stay(stored):
    path = home() / PI_SETTINGS_REL
    path.parent.mkdir(parents=True)
    path.write_text('{\n  "theme": "dark",\n  "defaultProvider": "openai",\n  "defaultModel": "gpt-5"\n}\n')
    assert run("configure", "pi", "1")[0] == 0
    assert (path.read_text(), Path(str(path) + ".metis-env.bak").exists()) == (
        '{\n  "theme": "dark",\n  "defaultProvider": "metis-1",\n  "defaultModel": "DeepSeek-R1"\n}\n', True,
    )


def test_codex_tables_are_replaced_in_place_and_the_next_tables_comment_survives(stored):
    path = home() / ".codex/config.toml"
    path.parent.mkdir(parents=True)
    stale = FRESH["codex"][1].replace(BASE, "https://old.example/v1")
    path.write_text("model = \"gpt-5\"\n\n" + stale + "\n# mine\n[tui]\nnotifications = true\n")
    assert run("configure", "codex", "1")[0] == 0
    assert path.read_text() == "model = \"gpt-5\"\n\n" + FRESH["codex"][1] + "\n# mine\n[tui]\nnotifications = true\n"


def test_a_second_endpoint_adds_its_own_entries(stored, endpoint_files):
    assert metis("import", str(endpoint_files[1])).returncode == 0
    for endpoint in ("1", "2"):
        assert run("configure", "opencode", endpoint)[0] == 0
    config = json.loads((home() / ".config/opencode/opencode.json").read_text())
    # endpoint 2, an endpoint file, is Metis: opencode goes there through this host's broker
    assert {k: v["options"]["baseURL"] for k, v in config["provider"].items()} == {
        "metis-1": BASE, "metis-2": f"http://127.0.0.1:{os.environ['METIS_ENV_PROXY_PORT']}/endpoint/2/v1",
    }
    assert run("configure", "aider", "2", "--model", "Llama-3.3-70B-Instruct")[0] == 0
    assert (home() / ".aider.conf.yml").read_text() == (
        "# >>> metis-env metis-2 (written by metis-env configure; edits here are replaced) >>>\n"
        "model: openai/Llama-3.3-70B-Instruct\n# <<< metis-env metis-2 <<<\n"
    )


def test_a_yaml_flow_list_is_rewritten_whole_and_said(stored):
    path = home() / ".config/io.datasette.llm/extra-openai-models.yaml"
    path.parent.mkdir(parents=True)
    path.write_text("[{model_id: local, model_name: llama3}]  # flow\n")
    code, _out, err = run("configure", "llm", "1")
    assert (code, err.splitlines()[0]) == (
        0,
        "metis-env: note: llm: ~/.config/io.datasette.llm/extra-openai-models.yaml is not a plain YAML block list, so it was "
        "rewritten whole: its entries are kept, its comments and layout are not (the backup has them)",
    )
    import yaml

    assert [e["model_id"] for e in yaml.safe_load(path.read_text())] == ["local", "metis-1/DeepSeek-R1"]
    assert run("configure", "llm", "1")[2].startswith("llm: ~/.config/io.datasette.llm/extra-openai-models.yaml is already up to date")


# --- bad input: one line, its exit code, the file untouched ---------------------------------------


@pytest.mark.parametrize(
    "tool, rel, content, message",
    [
        ("opencode", ".config/opencode/opencode.json", '{\n  "provider": {\n    "a": 1\n    "b": 2\n  }\n}\n',
         "opencode: ~/.config/opencode/opencode.json:4: not valid JSONC (expected ',' or '}')"),
        ("opencode", ".config/opencode/opencode.json", '[1, 2]\n',
         None),
        ("pi", ".pi/agent/models.json", '{\n  // a comment\n  "providers": {}\n}\n',
         "pi: ~/.pi/agent/models.json:2: not valid JSON (expected a quoted member name or '}')"),
        ("codex", ".codex/config.toml", 'model = "gpt-5"\n[tui\n',
         "codex: ~/.codex/config.toml:2: not valid TOML (Expected ']' at the end of a table declaration)"),
        ("llm", ".config/io.datasette.llm/extra-openai-models.yaml", "- model_id: a\n  model_name: [b\n",
         "llm: ~/.config/io.datasette.llm/extra-openai-models.yaml:3: not valid YAML (expected ',' or ']', but got '<stream end>')"),
        ("aider", ".aider.conf.yml", "model: gpt-4o\n  dark-mode: true\n",
         "aider: ~/.aider.conf.yml:2: not valid YAML (mapping values are not allowed here)"),
    ],
)
def test_a_config_that_does_not_parse_is_refused_and_untouched(tool, rel, content, message, stored):
    path = home() / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    if message is None:
        message = f"{tool}: ~/{rel}: the top level is not a JSON object; nothing was changed"
    else:
        message += "; fix it or move it away; nothing was changed"
    assert run("configure", tool, "1") == (22, "", f"metis-env: error: {message}\n")
    assert (path.read_text(), sorted(p.name for p in path.parent.iterdir())) == (content, [path.name])


def test_codex_inline_provider_table_is_refused(stored):
    path = home() / ".codex/config.toml"
    path.parent.mkdir(parents=True)
    content = 'model_providers = { metis-1 = { name = "mine" } }\n'
    path.write_text(content)
    assert run("configure", "codex", "1") == (
        22, "",
        "metis-env: error: codex: ~/.codex/config.toml defines model_providers.metis-1 in a form metis-env does not edit "
        "(an inline table or dotted keys); move those entries into [table] sections or remove them; nothing was changed\n",
    )
    assert path.read_text() == content


def test_a_symlink_is_refused(stored, tmp_path):
    target = tmp_path / "elsewhere.json"
    target.write_text("{}\n")
    link = home() / ".config/opencode/opencode.json"
    link.parent.mkdir(parents=True)
    link.symlink_to(target)
    assert run("configure", "opencode", "1") == (
        22, "",
        f"metis-env: error: opencode: ~/.config/opencode/opencode.json is a symbolic link (to {target}); metis-env does not "
        "write through links: configure the file it points to with the tool's own variable, or replace the link; nothing was changed\n",
    )
    assert (target.read_text(), link.is_symlink(), sorted(p.name for p in link.parent.iterdir())) == ("{}\n", True, ["opencode.json"])


def test_opencodes_plugin_is_rewritten_when_changed_and_refused_through_a_link(stored, tmp_path):
    from metis_env.configure.opencode import PLUGIN

    assert run("configure", "opencode", "1")[0] == 0
    plugin = home() / PLUGIN_REL
    plugin.write_text("// mine\n")
    code, _out, err = run("configure", "opencode", "1")
    assert (code, err.splitlines()[-2:], plugin.read_text(), Path(str(plugin) + ".metis-env.bak").read_text()) == (
        0, [f"opencode: wrote ~/{PLUGIN_REL}", f"opencode: use it: {USAGE['opencode']}"], PLUGIN, "// mine\n"
    )
    plugin.unlink()
    plugin.symlink_to(tmp_path / "x.js")
    config = (home() / FRESH["opencode"][0]).read_text()
    assert run("configure", "opencode", "1")[0] == 22
    assert ((home() / FRESH["opencode"][0]).read_text(), plugin.is_symlink(), (tmp_path / "x.js").exists()) == (config, True, False)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_a_file_of_another_user_is_refused(stored):
    path = home() / ".aider.conf.yml"
    path.write_text("dark-mode: true\n")
    os.chown(path, 65534, 65534)
    assert run("configure", "aider", "1") == (
        22, "", "metis-env: error: aider: ~/.aider.conf.yml belongs to another user (uid 65534); metis-env writes only your own files; nothing was changed\n"
    )
    assert (path.read_text(), path.stat().st_uid) == ("dark-mode: true\n", 65534)


def test_an_unknown_tool_lists_the_known_ones(stored):
    assert run("configure", "cursor", "1") == (2, "", "metis-env: error: unknown tool 'cursor'; metis-env configure knows: aider, claude, codex, llm, opencode, pi\n")


def test_an_unknown_model_is_the_selections_error(file_store, endpoint_files):
    # an endpoint file's list is exact (a gateway cluster passes an unlisted name on, with a warning)
    assert metis("import", str(endpoint_files[0])).returncode == 0
    assert run("configure", "llm", "1", "--model", "GPT-5") == (
        3, "", "metis-env: error: endpoint 1 does not serve model 'GPT-5'; it serves: DeepSeek-R1\n"
    )
    assert not (home() / ".config").exists()


def test_no_endpoint_stored_yet(file_store):
    assert run("configure", "pi") == (3, "", "metis-env: error: no endpoints are stored yet; run metis-env sync (endpoint files over SSH) or metis-env login (the ALCF gateway), or metis-env import FILE\n")


# --- tools that need a route: codex (/responses) and Claude Code (/v1/messages) ------------------


@pytest.mark.parametrize(
    "tool, record, routes, expected",
    [
        ("codex", "file", None,
         "codex: endpoint 1 is Metis, which serves chat completions only, and codex speaks only the Responses API; "
         "use a cluster that serves it: metis-env configure codex 2"),
        ("codex", "metis", ROUTES,
         "codex: endpoint metis is Metis, which serves chat completions only, and codex speaks only the Responses API; "
         "use a cluster that serves it: metis-env configure codex 2"),
        ("codex", "gateway", ["/v1/chat/completions"],
         "codex: gateway cluster 1 serves chat completions only (its routes have no /responses), and codex speaks only the "
         "Responses API; use a cluster that serves it: metis-env configure codex 2"),
        ("claude", "file", None,
         "claude: endpoint 1 is Metis, which serves chat completions only, and Claude Code speaks only the Messages API; "
         "use a cluster that has one: metis-env configure claude 2"),
        ("claude", "gateway", ["/v1/chat/completions", "/v1/responses"],
         "claude: gateway cluster 1 has no Anthropic Messages route (/v1/messages), and Claude Code speaks only the "
         "Messages API; use a cluster that has one: metis-env configure claude 2"),
        ("claude", "gateway", None,
         "claude: the gateway did not say which routes cluster 1 serves (run metis-env sync --gateway), and Claude Code "
         "speaks only the Messages API; use a cluster that has one: metis-env configure claude 2"),
    ],
)
def test_an_endpoint_without_the_tools_route_is_refused_naming_one_that_has_it(tool, record, routes, expected, file_store, endpoint_files):
    for path in endpoint_files:
        assert metis("import", str(path)).returncode == 0
    as_gateway_cluster("2")
    endpoint = "1"
    if record == "metis":
        endpoint = "metis"
        assert metis("import", "--id", "metis", str(endpoint_files[0])).returncode == 0
        as_gateway_cluster("metis", routes)
    elif record == "gateway":
        as_gateway_cluster("1", routes)
    assert run("configure", tool, endpoint) == (22, "", f"metis-env: error: {expected}; nothing was changed\n")
    assert sorted(p.name for p in home().iterdir()) == []


def test_with_no_cluster_that_serves_it_the_refusal_says_where_to_find_one(stored, endpoint_files):
    as_gateway_cluster("1", ["/v1/chat/completions"])
    assert run("configure", "codex", "1") == (22, "", (
        "metis-env: error: codex: gateway cluster 1 serves chat completions only (its routes have no /responses), and codex "
        "speaks only the Responses API; use a gateway cluster that serves /responses (metis-env login lists the gateway's "
        "clusters); nothing was changed\n"
    ))


# --- what the gateway says of a model: context window, tool calling, reasoning --------------------

CAPABILITIES = {"DeepSeek-R1": {"context_window_tokens": 131072, "tool_calling": False, "reasoning": True, "streaming": True}}


@pytest.mark.parametrize(
    "tool, read, expected",
    [
        ("pi", lambda text: json.loads(text)["providers"]["metis-1"]["models"],
         [{"id": "DeepSeek-R1", "name": "DeepSeek-R1", "contextWindow": 131072, "reasoning": True}]),
        ("opencode", lambda text: json.loads(text)["provider"]["metis-1"]["models"],
         {"DeepSeek-R1": {"name": "DeepSeek-R1", "tool_call": False, "reasoning": True}}),
        ("llm", lambda text: [sorted(m) for m in __import__("yaml").safe_load(text)],
         [["api_key_name", "can_stream", "model_id", "model_name"]]),
    ],
)
def test_the_gateways_capabilities_reach_the_tools_that_take_them(tool, read, expected, stored):
    as_gateway_cluster("1", capabilities=CAPABILITIES)
    code, _out, err = run("configure", tool, "1")
    assert (code, read((home() / FRESH[tool][0]).read_text())) == (0, expected), err


@pytest.mark.parametrize("tool, warned", [("opencode", True), ("pi", True), ("codex", True), ("claude", True), ("aider", True), ("llm", False)])
def test_an_agent_is_configured_with_a_warning_for_a_model_without_tool_calling(tool, warned, stored):
    as_gateway_cluster("1", capabilities=CAPABILITIES)
    code, _out, err = run("configure", tool, "1", "--dry-run")
    warning = ("metis-env: warning: DeepSeek-R1 on endpoint 1 does not support tool calling (the gateway says so); "
               f"{tool} is an agent that needs it and may fail: pick another model with --model\n")
    assert (code, err.startswith(warning)) == (0, warned)


def test_llm_marks_the_models_that_call_tools(stored):
    as_gateway_cluster("1", capabilities={"DeepSeek-R1": {"tool_calling": {"supported": True}}})
    assert run("configure", "llm", "1")[0] == 0
    assert __import__("yaml").safe_load((home() / FRESH["llm"][0]).read_text())[0]["supports_tools"] is True


def test_configure_completes_the_tool_names(stored):
    proc = metis(env={"_METIS_ENV_COMPLETE": "bash_complete", "COMP_WORDS": "metis-env configure c", "COMP_CWORD": "2"})
    assert (proc.returncode, proc.stdout.decode()) == (0, "plain,claude\nplain,codex\n")
