"""What discovery stores of the gateway's models and routes, and how export picks a model from it, through
the real CLI after a real `metis-env login` against the Globus/gateway stand-in; curl reads the export."""

from __future__ import annotations

import json
import subprocess
import sys

from tests._gateway import gateway_env, logged_in  # noqa: F401  (fixtures)
from tests._globus import globus, globus_env, logged_when  # noqa: F401  (fixtures)
from tests.conftest import REPO

REPLY = "Hello from the metis-env stand-in gateway."


def cli(env, *args):
    proc = subprocess.run([sys.executable, "-m", "metis_env", *args], capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), **env}, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def exported(env, *args):
    code, out, err = cli(env, "export", *args, "--shell", "json")
    return code, json.loads(out or "{}").get("MODEL_NAME"), err


def test_login_stores_routes_and_capabilities_and_list_json_carries_them(logged_in):  # noqa: F811
    env, globus = logged_in
    code, out, err = cli(env, "list", "--json")
    rows = {row["id"]: row for row in json.loads(out)["endpoints"]}
    assert (code, err, {k: (r["base_url"], r["routes"], sorted(r["capabilities"])) for k, r in rows.items()}) == (0, "", {
        "metis": (globus.gateway_url + "metis/api/v1", ["/v1/chat/completions"],
                  ["Mistral-Large-3-675B-Instruct-2512", "gemma-4-31B-it", "gpt-oss-120b"]),
        "sophia": (globus.gateway_url + "sophia/vllm/v1", ["/v1/chat/completions", "/v1/completions", "/v1/embeddings",
                                                          "/v1/responses", "/v1/messages", "/v1/batches"],
                   ["meta-llama/Meta-Llama-3.1-8B-Instruct", "openai/gpt-oss-120b"]),
    })
    assert rows["metis"]["capabilities"]["gpt-oss-120b"] == {
        "display_name": "gpt-oss-120b", "context_window_tokens": 131072, "tool_calling": False, "reasoning": True,
        "streaming": True, "api_protocols": ["chat_completions"], "input_modalities": ["text"],
        "rate_limit_token_per_minute": 2000000, "rate_limit_token_per_minute_per_user": 200000}
    code, out, err = cli(env, "status", "metis")
    assert (code, err, out) == (0, "", (
        "ENDPOINT  MODEL                               STATUS  CONTEXT  TOOLS  REASONING  TPM (USER/MODEL)\n"
        "metis     Mistral-Large-3-675B-Instruct-2512  live    262144   no     no         200000/2000000\n"
        "metis     gemma-4-31B-it                      live    131072   no     no         200000/2000000\n"
        "metis     gpt-oss-120b                        live    131072   no     yes        200000/2000000\n"
    ))


def test_an_older_gateway_without_model_details_still_logs_in(globus, globus_env):  # noqa: F811
    from tests._gateway import login_headless

    globus.gateway.models_route = False
    env = gateway_env(globus_env)
    code, out, err, _url = login_headless(env, globus)
    assert (code, out) == (0, b""), err
    rows = json.loads(cli(env, "list", "--json")[1])["endpoints"]
    assert [(r["id"], "capabilities" in r, r["routes"][0]) for r in rows] == [
        ("metis", False, "/v1/chat/completions"), ("sophia", False, "/v1/chat/completions")]
    assert cli(env, "status", "metis")[1].splitlines()[0] == "ENDPOINT  MODEL                               STATUS"


def test_model_names_in_any_case_and_names_the_gateway_did_not_list(logged_in):  # noqa: F811
    env, globus = logged_in
    assert exported(env, "metis", "--model", "GPT-OSS-120B") == (0, "gpt-oss-120b", "")
    assert exported({**env, "METIS_ENV_DEFAULT_MODEL": "GEMMA-4-31b-it"}, "metis") == (0, "gemma-4-31B-it", "")
    assert exported(env, "metis", "--model", "gpt-oss-120b-2025") == (0, "gpt-oss-120b-2025", (
        "metis-env: warning: model 'gpt-oss-120b-2025' is not among the models the gateway listed for endpoint metis "
        "(Mistral-Large-3-675B-Instruct-2512, gemma-4-31B-it, gpt-oss-120b); passing it on as it is (the gateway may "
        "serve it under an old name): metis-env sync --gateway asks for the list again\n"))
    # run takes the same names as export
    assert cli(env, "run", "metis", "--model", "GPT-OSS-120B", "--", sys.executable, "-c",
               "import os; print(os.environ['MODEL_NAME'])")[:2] == (0, "gpt-oss-120b\n")


def test_with_no_model_asked_for_export_takes_one_that_was_live_at_the_last_look(logged_in):  # noqa: F811
    env, globus = logged_in
    assert exported(env, "sophia") == (0, "meta-llama/Meta-Llama-3.1-8B-Instruct", "")  # no look yet: the first
    assert cli(env, "status", "sophia")[0] == 0
    assert exported(env, "sophia") == (0, "openai/gpt-oss-120b", "")
    assert exported(env, "sophia", "--model", "meta-llama/Meta-Llama-3.1-8B-Instruct")[1] == "meta-llama/Meta-Llama-3.1-8B-Instruct"


CURL = """eval "$("$PYTHON" -m metis_env export metis --shell bash)" && curl -sS --fail-with-body --cacert "$CA" \
  -H "Authorization: Bearer $OPENAI_API_KEY" -H 'Content-Type: application/json' \
  -d "{\\"model\\": \\"$MODEL_NAME\\", \\"messages\\": [{\\"role\\": \\"user\\", \\"content\\": \\"hi\\"}]}" \
  "${OPENAI_BASE_URL}/chat/completions"
"""


def test_the_seeds_curl_line_works_on_the_exported_base_url(logged_in):  # noqa: F811
    env, globus = logged_in
    proc = subprocess.run(["bash", "-c", CURL], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO), **env, "PYTHON": sys.executable, "CA": globus.ca_file})
    assert (proc.returncode, proc.stderr, json.loads(proc.stdout or "{}").get("choices", [{}])[0].get("message")) == (
        0, "", {"role": "assistant", "content": REPLY})
    log = logged_when(globus, lambda log: any(r.path.endswith("/completions") for r in log))
    assert [r.path for r in log if r.method == "POST" and "/v1/" in r.path] == [
        "/resource_server/metis/api/v1/chat/completions"]
