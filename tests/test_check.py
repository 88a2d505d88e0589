"""`check` against real servers on 127.0.0.1: the stub endpoint, canned answers, silence, TLS."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests._http import Canned, CannedServer, SilentServer, closed_port
from tests._tls import make_self_signed, server_context
from metis_env import check, http
from metis_env.check import CheckResult, check_endpoint, raise_for_result
from metis_env.errors import (
    CheckFailedError,
    CheckTimeoutError,
    CheckUnauthorizedError,
    CheckUnreachableError,
)
from metis_env.testing.openai_server import OpenAIStubServer, StubRequest

KEY = "sk-metis-test-7f3a9c0d1e2b4a5f"
SERVED = ("DeepSeek-R1", "Meta-Llama-3.3-70B-Instruct")
IN_FILE = ("DeepSeek-R1", "Llama-4-Maverick-17B-128E-Instruct")
SYNC_HINT = "the key may have rotated: run `metis-env sync`"
CERT_HINT = "if your network inspects TLS with its own CA, point SSL_CERT_FILE at a bundle that includes it"
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def plain_network_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy and the system's CAs only, whatever the machine running the tests has set."""
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", *PROXY_VARIABLES, *(v.upper() for v in PROXY_VARIABLES)):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def stub() -> OpenAIStubServer:
    server = OpenAIStubServer(KEY, SERVED)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    return make_self_signed(tmp_path)


@pytest.fixture
def tls_stub(tls_files: tuple[Path, Path]) -> OpenAIStubServer:
    server = OpenAIStubServer(KEY, SERVED, ssl_context=server_context(*tls_files))
    server.start()
    yield server
    server.stop()


def without_latency(result: CheckResult) -> dict:
    """The JSON form with the one value a test cannot know, after checking it is a sane number."""
    data = json.loads(result.to_json())
    if result.ok:
        assert isinstance(data["latency_ms"], int) and 0 <= data["latency_ms"] < 5000
        data["latency_ms"] = "<ms>"
    return data


def expected(base_url: str, status: str, message: str, **fields) -> dict:
    return {
        "endpoint": "1",
        "base_url": base_url,
        "status": status,
        "http_status": fields.get("http_status"),
        "latency_ms": fields.get("latency_ms"),
        "probe": fields.get("probe"),
        "models": fields.get("models", {name: None for name in IN_FILE}),
        "message": message,
    }


# -- answers from an OpenAI-compatible endpoint ---------------------------------------------------


@pytest.mark.parametrize("slash", ["", "/"])
def test_ok_reports_which_models_in_the_file_are_served(stub: OpenAIStubServer, slash: str) -> None:
    result = check_endpoint(stub.base_url + slash, KEY, IN_FILE, endpoint="1")

    assert without_latency(result) == expected(
        stub.base_url + slash,
        "ok",
        "DeepSeek-R1 served, Llama-4-Maverick-17B-128E-Instruct not listed by /models",
        http_status=200,
        latency_ms="<ms>",
        probe="GET /models",
        models={"DeepSeek-R1": True, "Llama-4-Maverick-17B-128E-Instruct": False},
    )
    assert stub.requests == [StubRequest("GET", "/v1/models", True)]
    assert result.summary() == (
        f"1: ok in {result.latency_ms} ms: DeepSeek-R1 served, "
        "Llama-4-Maverick-17B-128E-Instruct not listed by /models"
    )
    assert raise_for_result(result) is None


def test_endpoint_defaults_to_the_base_url_and_a_file_may_list_no_model(stub: OpenAIStubServer) -> None:
    result = check_endpoint(stub.base_url, KEY, [])

    assert (result.endpoint, result.status, result.models, result.message) == (
        stub.base_url,
        "ok",
        {},
        "key accepted; the endpoint file lists no models",
    )


def test_a_refused_key_is_unauthorized_and_suggests_sync(stub: OpenAIStubServer) -> None:
    result = check_endpoint(stub.base_url, "sk-rotated-long-ago-000000", IN_FILE, endpoint="1")

    assert without_latency(result) == expected(
        stub.base_url,
        "unauthorized",
        f"{stub.base_url}/models refused the stored key (HTTP 401: Invalid API key); {SYNC_HINT}",
        http_status=401,
        probe="GET /models",
    )
    with pytest.raises(CheckUnauthorizedError) as raised:
        raise_for_result(result)
    assert (raised.value.exit_code, str(raised.value)) == (12, f"check of endpoint 1: {result.message}")


def test_without_models_each_model_is_tried_with_a_one_token_completion() -> None:
    with OpenAIStubServer(KEY, SERVED, serve_models=False) as base_url:
        result = check_endpoint(base_url, KEY, IN_FILE, endpoint="1")

    assert without_latency(result) == expected(
        base_url,
        "ok",
        "DeepSeek-R1 answered; Llama-4-Maverick-17B-128E-Instruct refused (HTTP 404, The model "
        "`Llama-4-Maverick-17B-128E-Instruct` does not exist) (/models answered 404, so each model was "
        "tried with a 1-token chat completion)",
        http_status=200,
        latency_ms="<ms>",
        probe="POST /chat/completions",
        models={"DeepSeek-R1": True, "Llama-4-Maverick-17B-128E-Instruct": False},
    )


def test_the_fallback_sends_one_token_requests_for_each_model_in_order() -> None:
    stub = OpenAIStubServer(KEY, SERVED, serve_models=False)
    with stub as base_url:
        check_endpoint(base_url, KEY, IN_FILE)

    def chat(model: str) -> StubRequest:
        body = {"model": model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
        return StubRequest("POST", "/v1/chat/completions", True, body)

    assert stub.requests == [StubRequest("GET", "/v1/models", True), chat(IN_FILE[0]), chat(IN_FILE[1])]


def test_without_models_and_no_model_answering_the_check_fails() -> None:
    with OpenAIStubServer(KEY, ["something-else"], serve_models=False) as base_url:
        result = check_endpoint(base_url, KEY, ["DeepSeek-R1"], endpoint="1")

    assert without_latency(result) == {
        **expected(
            base_url,
            "failed",
            "no model answered: DeepSeek-R1 refused (HTTP 404, The model `DeepSeek-R1` does not exist) "
            "(/models answered 404, so each model was tried with a 1-token chat completion)",
            http_status=404,
            probe="POST /chat/completions",
        ),
        "models": {"DeepSeek-R1": False},
    }
    with pytest.raises(CheckFailedError):
        raise_for_result(result)


def test_without_models_a_refused_key_is_unauthorized() -> None:
    with OpenAIStubServer(KEY, SERVED, serve_models=False) as base_url:
        result = check_endpoint(base_url, "sk-rotated-long-ago-000000", IN_FILE, endpoint="1")

    assert (result.status, result.http_status, result.probe, result.message) == (
        "unauthorized",
        401,
        "POST /chat/completions",
        f"{base_url}/chat/completions refused the stored key (HTTP 401: Invalid API key); {SYNC_HINT}",
    )


def test_without_models_and_no_model_in_the_file_the_check_fails() -> None:
    with OpenAIStubServer(KEY, SERVED, serve_models=False) as base_url:
        result = check_endpoint(base_url, KEY, [], endpoint="1")

    assert (result.status, result.http_status, result.message) == (
        "failed",
        404,
        "/models answered 404 and the endpoint file lists no model to try a chat completion with; "
        "is BASE_URL right?",
    )


# -- answers that are not what an OpenAI-compatible endpoint gives ---------------------------------

HTML = Canned(200, b"<html>Sign in to the network</html>", (("Content-Type", "text/html; charset=utf-8"),))


@pytest.mark.parametrize(
    ("canned", "status", "http_status", "message"),
    [
        (
            Canned(403, b'{"error": {"message": "account disabled"}}'),
            "unauthorized",
            403,
            "{url} refused the stored key (HTTP 403: account disabled); " + SYNC_HINT,
        ),
        (HTML, "failed", 200, "{url} answered 200 but not with an OpenAI model list (not JSON: text/html, 35 bytes); is BASE_URL right?"),
        (
            Canned(200, b'{"models": []}'),
            "failed",
            200,
            "{url} answered 200 but not with an OpenAI model list (JSON, 14 bytes); is BASE_URL right?",
        ),
        (
            Canned(502, b"Bad Gateway", (("Content-Type", "text/plain"),)),
            "failed",
            502,
            "{url} answered HTTP 502 (not JSON: text/plain, 11 bytes)",
        ),
        (
            Canned(429, b'{"error": {"message": "Rate limit exceeded"}}'),
            "failed",
            429,
            "{url} answered HTTP 429: Rate limit exceeded (JSON, 45 bytes)",
        ),
        (
            Canned(302, b"", (("Location", "https://login.example.org/sso?next=/v1/models"),)),
            "failed",
            302,
            "{url} redirected to https://login.example.org/sso?next=/v1/models (HTTP 302), not followed; "
            "is BASE_URL up to date? run `metis-env sync`",
        ),
    ],
    ids=["403", "html", "json-not-a-list", "502", "429", "redirect"],
)
def test_unexpected_answers(canned: Canned, status: str, http_status: int, message: str) -> None:
    with CannedServer(lambda handler: canned) as server:
        base_url = f"http://127.0.0.1:{server.port}/v1"
        result = check_endpoint(base_url, KEY, IN_FILE, endpoint="1")

    assert without_latency(result) == expected(
        base_url, status, message.format(url=f"{base_url}/models"), http_status=http_status, probe="GET /models"
    )
    assert server.paths == ["/v1/models"]  # a redirect is never followed: the key stays where it was sent


def test_a_connection_closed_without_an_answer_fails() -> None:
    with CannedServer(lambda handler: Canned(0, raw=b"garbage\r\n")) as server:
        result = check_endpoint(f"http://127.0.0.1:{server.port}/v1", KEY, IN_FILE, endpoint="1")

    assert (result.status, result.http_status, result.message) == (
        "failed",
        None,
        f"127.0.0.1:{server.port} closed the connection without a valid HTTP answer (BadStatusLine)",
    )


# -- no answer at all ------------------------------------------------------------------------------


def test_connection_refused_is_unreachable() -> None:
    port = closed_port()
    base_url = f"http://127.0.0.1:{port}/v1"

    result = check_endpoint(base_url, KEY, IN_FILE, endpoint="1")

    assert without_latency(result) == expected(
        base_url,
        "unreachable",
        f"connection refused by 127.0.0.1:{port}; is the endpoint up and the port right?",
        probe="GET /models",
    )
    with pytest.raises(CheckUnreachableError) as raised:
        raise_for_result(result)
    assert raised.value.exit_code == 13


def test_a_server_that_never_answers_times_out_within_the_timeout() -> None:
    with SilentServer() as server:
        base_url = f"http://127.0.0.1:{server.port}/v1"
        start = time.monotonic()
        result = check_endpoint(base_url, KEY, IN_FILE, timeout=0.3, endpoint="1")
        elapsed = time.monotonic() - start

    assert without_latency(result) == expected(
        base_url, "timeout", f"127.0.0.1:{server.port} did not answer within 0.3 s", probe="GET /models"
    )
    assert 0.3 <= elapsed < 2
    with pytest.raises(CheckTimeoutError) as raised:
        raise_for_result(result)
    assert raised.value.exit_code == 14


def test_a_tls_server_that_never_answers_the_handshake_times_out() -> None:
    with SilentServer() as server:
        result = check_endpoint(f"https://127.0.0.1:{server.port}/v1", KEY, IN_FILE, timeout=0.3)

    assert (result.status, result.message) == ("timeout", f"127.0.0.1:{server.port} did not answer within 0.3 s")


@pytest.mark.parametrize(
    ("base_url", "message"),
    [
        ("ftp://metis.example.org/v1", "BASE_URL 'ftp://metis.example.org/v1' is not an http(s) URL; run `metis-env sync`"),
        ("metis.example.org/v1", "BASE_URL 'metis.example.org/v1' is not an http(s) URL; run `metis-env sync`"),
    ],
)
def test_a_base_url_that_is_not_http_fails_without_a_request(base_url: str, message: str) -> None:
    result = check_endpoint(base_url, KEY, IN_FILE)

    assert (result.status, result.http_status, result.probe, result.message) == ("failed", None, None, message)


# -- TLS -------------------------------------------------------------------------------------------


def test_a_self_signed_certificate_is_refused_by_default(tls_stub: OpenAIStubServer) -> None:
    result = check_endpoint(tls_stub.base_url, KEY, IN_FILE, endpoint="1")

    port = tls_stub.base_url.split(":")[2].split("/")[0]
    assert without_latency(result) == expected(
        tls_stub.base_url,
        "unreachable",
        f"TLS certificate of 127.0.0.1:{port} not trusted (self-signed certificate); {CERT_HINT}",
        probe="GET /models",
    )
    assert tls_stub.requests == []


def test_a_self_signed_certificate_is_refused_with_the_system_bundle_named(
    tls_stub: OpenAIStubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")

    assert check_endpoint(tls_stub.base_url, KEY, IN_FILE).status == "unreachable"


def test_ssl_cert_file_trusting_the_certificate_is_honoured(
    tls_stub: OpenAIStubServer, tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files[0]))

    result = check_endpoint(tls_stub.base_url, KEY, IN_FILE, endpoint="1")

    assert (result.status, result.models) == ("ok", {"DeepSeek-R1": True, "Llama-4-Maverick-17B-128E-Instruct": False})
    assert tls_stub.requests == [StubRequest("GET", "/v1/models", True)]


def test_ssl_cert_dir_trusting_the_certificate_is_honoured(
    tls_stub: OpenAIStubServer, tls_files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert_dir = tmp_path / "certs"
    cert_dir.mkdir()
    subject_hash = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(tls_files[0])], capture_output=True, text=True, check=True
    ).stdout.strip()
    (cert_dir / f"{subject_hash}.0").symlink_to(tls_files[0])
    monkeypatch.setenv("SSL_CERT_DIR", str(cert_dir))

    assert check_endpoint(tls_stub.base_url, KEY, IN_FILE).status == "ok"


def test_tls_to_a_plain_http_server_is_a_tls_failure(stub: OpenAIStubServer) -> None:
    https_url = stub.base_url.replace("http://", "https://")

    result = check_endpoint(https_url, KEY, IN_FILE)

    port = stub.base_url.split(":")[2].split("/")[0]
    assert (result.status, result.message) == (
        "unreachable",
        f"TLS handshake with 127.0.0.1:{port} failed (WRONG_VERSION_NUMBER)",
    )


# -- proxies ---------------------------------------------------------------------------------------


def test_a_loopback_endpoint_never_goes_through_a_proxy(stub: OpenAIStubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")

    assert check_endpoint(stub.base_url, KEY, IN_FILE).status == "ok"


def test_the_proxy_variables_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    models = json.dumps({"object": "list", "data": [{"id": "DeepSeek-R1"}]}).encode()
    with CannedServer(lambda handler: Canned(200, models)) as proxy:
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.port}")

        result = check_endpoint("http://metis.example.invalid/v1", KEY, IN_FILE)

    assert (result.status, result.models) == ("ok", {"DeepSeek-R1": True, "Llama-4-Maverick-17B-128E-Instruct": False})
    assert proxy.paths == ["http://metis.example.invalid/v1/models"]


def test_a_refusing_proxy_is_named_without_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    monkeypatch.setenv("HTTPS_PROXY", f"http://alice:proxy-secret@127.0.0.1:{port}")

    result = check_endpoint("https://metis.example.invalid/v1", KEY, IN_FILE)

    assert (result.status, result.message) == (
        "unreachable",
        f"connection refused by the proxy 127.0.0.1:{port}; is the endpoint up and the port right?",
    )


@pytest.mark.parametrize(
    ("no_proxy", "host", "proxied"),
    [
        ("", "metis.alcf.anl.gov", True),
        ("metis.alcf.anl.gov", "metis.alcf.anl.gov", False),
        (".anl.gov", "metis.alcf.anl.gov", False),
        ("*", "metis.alcf.anl.gov", False),
        ("", "localhost", False),
        ("", "127.0.0.1", False),
        ("", "::1", False),
    ],
)
def test_no_proxy_decides_which_hosts_skip_the_proxy(
    no_proxy: str, host: str, proxied: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.org:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)

    assert http.proxy_for("https", host) == ("http://proxy.example.org:3128" if proxied else None)


# -- the key never shows -----------------------------------------------------------------------------


def echo_the_key(handler) -> Canned:
    """A hostile or careless server that repeats the Authorization header everywhere it can."""
    header = handler.headers.get("Authorization", "")
    body = json.dumps({"error": {"message": f"bad header {header}"}}).encode()
    return Canned(500, body, (("Content-Type", "application/json"), ("Location", f"https://x/{header}")))


def outcomes(tmp_path: Path):
    """(name, a function returning the CheckResult) for every outcome, each against a real server."""

    def with_stub(key: str, **options) -> CheckResult:
        with OpenAIStubServer(KEY, SERVED, **options) as base_url:
            return check_endpoint(base_url, key, IN_FILE)

    def with_canned(route, path: str = "/v1") -> CheckResult:
        with CannedServer(route) as server:
            return check_endpoint(f"http://127.0.0.1:{server.port}{path}", KEY, IN_FILE)

    def with_tls() -> CheckResult:
        with OpenAIStubServer(KEY, SERVED, ssl_context=server_context(*make_self_signed(tmp_path))) as base_url:
            return check_endpoint(base_url, KEY, IN_FILE)

    def silent() -> CheckResult:
        with SilentServer() as server:
            return check_endpoint(f"http://127.0.0.1:{server.port}/v1", KEY, IN_FILE, timeout=0.2)

    redirect = lambda h: Canned(307, b"", (("Location", "https://elsewhere/" + h.headers["Authorization"]),))  # noqa: E731
    return {
        "ok": lambda: with_stub(KEY),
        "ok-fallback": lambda: with_stub(KEY, serve_models=False),
        "unauthorized": lambda: with_stub(KEY + "-old"),
        "echoed-in-error": lambda: with_canned(echo_the_key),
        "echoed-in-redirect": lambda: with_canned(redirect),
        "key-in-base-url": lambda: with_canned(echo_the_key, path=f"/{KEY}/v1"),
        "refused": lambda: check_endpoint(f"http://127.0.0.1:{closed_port()}/v1", KEY, IN_FILE),
        "timeout": silent,
        "tls": with_tls,
        "newline-in-key": lambda: check_endpoint("http://127.0.0.1:9/v1", KEY + "\n", IN_FILE),
        "non-latin-key": lambda: check_endpoint("http://127.0.0.1:9/v1", KEY + "é", IN_FILE),
    }


OUTCOMES = {
    "ok": "ok",
    "ok-fallback": "ok",
    "unauthorized": "unauthorized",
    "echoed-in-error": "failed",
    "echoed-in-redirect": "failed",
    "key-in-base-url": "failed",
    "refused": "unreachable",
    "timeout": "timeout",
    "tls": "unreachable",
    "newline-in-key": "failed",
    "non-latin-key": "failed",
}


@pytest.mark.parametrize("name", sorted(OUTCOMES))
def test_the_key_never_appears_in_a_result_or_an_error(name: str, tmp_path: Path) -> None:
    result = outcomes(tmp_path)[name]()

    assert result.status == OUTCOMES[name]
    shown = [repr(result), result.to_json(), json.dumps(result.to_dict()), result.summary()]
    try:
        raise_for_result(result)
    except Exception as exc:  # noqa: BLE001 - every raised error is inspected
        assert (exc.__cause__, exc.__context__) == (None, None)
        shown += [str(exc), repr(exc)]
    assert [text for text in shown if KEY in text] == []


def test_an_unusable_key_is_reported_without_a_request() -> None:
    result = check_endpoint("http://127.0.0.1:9/v1", "sk-with\nnewline", IN_FILE)

    assert (result.status, result.probe, result.message) == (
        "failed",
        None,
        "the stored key is empty or holds characters an HTTP header cannot carry; run `metis-env sync`",
    )


# -- the result's forms and the exit codes ---------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "exit_code"),
    [
        ("unauthorized", CheckUnauthorizedError, 12),
        ("unreachable", CheckUnreachableError, 13),
        ("timeout", CheckTimeoutError, 14),
        ("failed", CheckFailedError, 15),
    ],
)
def test_raise_for_result_maps_each_outcome_to_its_error(status: str, error: type, exit_code: int) -> None:
    result = CheckResult(endpoint="2", base_url="https://m.example.org/v1", status=status, message="what and why")

    with pytest.raises(error) as raised:
        raise_for_result(result)

    assert (type(raised.value), raised.value.exit_code, str(raised.value)) == (
        error,
        exit_code,
        "check of endpoint 2: what and why",
    )


def test_the_json_form_has_stable_keys_in_order() -> None:
    result = CheckResult(endpoint="2", base_url="https://m.example.org/v1", status="timeout", message="m")

    assert list(json.loads(result.to_json())) == [
        "endpoint",
        "base_url",
        "status",
        "http_status",
        "latency_ms",
        "probe",
        "models",
        "message",
    ]


# -- the stub serves the real openai client --------------------------------------------------------


def test_the_openai_package_talks_to_the_stub() -> None:
    import openai

    with OpenAIStubServer(KEY, SERVED, reply="Hi there.") as base_url:
        client = openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=5)
        listed = [model.id for model in client.models.list()]
        completion = client.chat.completions.create(
            model="DeepSeek-R1", messages=[{"role": "user", "content": "Say hi"}]
        )
        stream = client.chat.completions.create(
            model="DeepSeek-R1", messages=[{"role": "user", "content": "Say hi"}], stream=True
        )
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=base_url, api_key="sk-wrong", max_retries=0).models.list()

    assert (listed, completion.choices[0].message.content, streamed) == (list(SERVED), "Hi there.", "Hi there.")


# -- metis-env check, the command ------------------------------------------------------------------


def endpoint_file(folder: Path, base_url: str, key: str = KEY) -> Path:
    path = folder / "metis_endpoint_1.txt"
    path.write_text(f"BASE_URL={base_url}\nSAMBANOVA_API_KEY={key}\nMODELS={','.join(IN_FILE)}\n")
    return path


def test_the_command_prints_the_summary_and_exits_0(stub: OpenAIStubServer, tmp_path: Path, file_store) -> None:
    from tests.conftest import metis

    metis("import", str(endpoint_file(tmp_path, stub.base_url + "/")), check=True)

    done = metis("check", "1")

    out = done.stdout.decode()
    latency = out.split(" in ", 1)[1].split(" ms", 1)[0]
    assert (done.returncode, out, done.stderr) == (
        0,
        f"1: ok in {latency} ms: DeepSeek-R1 served, Llama-4-Maverick-17B-128E-Instruct not listed by /models\n",
        b"",
    )


def test_the_command_prints_json_and_exits_with_the_outcome_code(tmp_path: Path, file_store) -> None:
    from tests.conftest import metis

    with OpenAIStubServer("sk-the-rotated-new-key-000", SERVED) as base_url:
        metis("import", str(endpoint_file(tmp_path, base_url)), check=True)
        done = metis("check", "--json", "1")

    message = f"{base_url}/models refused the stored key (HTTP 401: Invalid API key); {SYNC_HINT}"
    assert (done.returncode, json.loads(done.stdout), done.stderr.decode()) == (
        12,
        expected(base_url, "unauthorized", message, http_status=401, probe="GET /models"),
        f"metis-env: error: check of endpoint 1: {message}\n",
    )
    assert KEY.encode() not in done.stdout + done.stderr


def test_the_command_exits_13_when_nothing_listens(tmp_path: Path, file_store) -> None:
    from tests.conftest import metis

    port = closed_port()
    metis("import", str(endpoint_file(tmp_path, f"http://127.0.0.1:{port}/v1")), check=True)

    done = metis("check")

    message = f"connection refused by 127.0.0.1:{port}; is the endpoint up and the port right?"
    assert (done.returncode, done.stdout.decode(), done.stderr.decode()) == (
        13,
        f"1: unreachable: {message}\n",
        f"metis-env: error: check of endpoint 1: {message}\n",
    )


# With no ENDPOINT, check checks every stored endpoint (as docs/demo.md shows), all at once; the
# first failed one gives the exit code. At a terminal the error line does not repeat the result.
def test_check_without_endpoint_checks_every_stored_endpoint(tmp_path, monkeypatch):
    from metis_env.commands.check_report import check_all, raise_for_results
    from metis_env.errors import CheckUnreachableError

    with OpenAIStubServer("sk-good-0123456789", ["DeepSeek-R1"]) as base_url:
        refused = "http://127.0.0.1:9/v1/"  # discard port: nothing listens
        results = check_all([("1", base_url, "sk-good-0123456789", ["DeepSeek-R1"]),
                             ("2", refused, "sk-x-0123456789", ["m"])], 5)
    assert [(r.endpoint, r.status) for r in results] == [("1", "ok"), ("2", "unreachable")]
    for at_terminal, message in [(True, "check of endpoint 2 failed (unreachable); see above"),
                                 (False, f"check of endpoint 2: {results[1].message}")]:
        with pytest.raises(CheckUnreachableError) as caught:
            raise_for_results(results, at_terminal)
        assert str(caught.value) == message
    raise_for_results(results[:1], True)


@pytest.mark.parametrize("default_model, code, status, tail", [
    (None, 0, "ok", ""),
    ("Llama-4-Maverick-17B-128E-Instruct", 21, "not_live",
     "; Llama-4-Maverick-17B-128E-Instruct, the model export picks, is not served: pick a served one "
     "(export --model NAME, or metis-env config set default_model NAME)"),
])
def test_the_command_fails_when_the_model_export_picks_is_not_served(stub: OpenAIStubServer, tmp_path: Path, file_store,
                                                                       default_model, code, status, tail) -> None:
    from tests.conftest import metis

    metis("import", str(endpoint_file(tmp_path, stub.base_url + "/")), check=True)
    env = {"METIS_ENV_DEFAULT_MODEL": default_model} if default_model else {}
    done = metis("check", "--json", "1", env=env)
    message = "DeepSeek-R1 served, Llama-4-Maverick-17B-128E-Instruct not listed by /models" + tail
    found = json.loads(done.stdout)
    assert (done.returncode, found["status"], found["message"], done.stderr.decode()) == (
        code, status, message, f"metis-env: error: check of endpoint 1: {message}\n" if code else "")
