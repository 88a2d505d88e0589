"""A tiny OpenAI-compatible server on 127.0.0.1, for the tests and for ``metis-env demo``.

It answers ``GET /v1/models``, ``POST /v1/chat/completions`` (plain or ``stream: true``) and
``POST /v1/responses`` (OpenAI's Responses API, which codex speaks) with a
canned reply, only for a request carrying ``Authorization: Bearer <api_key>``, in the shapes the
``openai`` package parses. Errors use OpenAI's ``{"error": {...}}`` body. Standard library only.

    with OpenAIStubServer("sk-demo", ["Llama-4-Maverick-17B-128E-Instruct"]) as base_url:
        ...  # OPENAI_BASE_URL=base_url, OPENAI_API_KEY=sk-demo
"""

from __future__ import annotations

import hmac
import json
import ssl
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_REPLY = "Hello from the metis-env stub endpoint."
MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class StubRequest:
    """One request the server answered: enough for a test to assert on, never the key itself."""

    method: str
    path: str
    authorized: bool
    body: Any = None


class OpenAIStubServer:
    """An OpenAI-compatible endpoint serving ``models`` to holders of ``api_key``.

    ``serve_models=False`` makes ``/v1/models`` answer 404, as some deployments do, so that a client
    must fall back to a chat completion. ``metis_strict=True`` answers a chat completion as Metis does
    what it cannot take: 422 in FastAPI's ``{"detail": [...]}`` shape for a message ``content`` that
    is not a string ("Input should be a valid string"). ``ssl_context`` (a server-side context) serves HTTPS.
    ``start()`` returns the base URL (``http://127.0.0.1:PORT/v1``); ``stop()`` shuts the server
    down and joins its thread. Also a context manager yielding the base URL.
    """

    def __init__(
        self,
        api_key: str,
        models: Sequence[str],
        *,
        reply: str = DEFAULT_REPLY,
        serve_models: bool = True,
        metis_strict: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._api_key = api_key
        self.models = tuple(models)
        self.reply = reply
        self.serve_models = serve_models
        self.metis_strict = metis_strict
        self._ssl_context = ssl_context
        self._address = (host, port)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._requests: list[StubRequest] = []

    def __repr__(self) -> str:
        return f"OpenAIStubServer(models={self.models!r}, base_url={self.base_url!r})"

    @property
    def base_url(self) -> str | None:
        if self._server is None:
            return None
        host, port = self._server.server_address[:2]
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{host}:{port}/v1"

    @property
    def requests(self) -> list[StubRequest]:
        """The requests answered so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def set_api_key(self, api_key: str) -> None:
        """Accept ``api_key`` from now on, and no longer the old one (the endpoint's key rotated)."""
        with self._lock:
            self._api_key = api_key

    def start(self) -> str:
        if self._server is not None:
            raise RuntimeError("OpenAIStubServer already started")
        server = ThreadingHTTPServer(self._address, _handler_for(self))
        server.daemon_threads = True
        if self._ssl_context is not None:
            # Handshake in the per-connection thread, so that one silent client cannot stall accept().
            server.socket = self._ssl_context.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="openai-stub", daemon=True
        )
        self._thread.start()
        return self.base_url  # type: ignore[return-value]

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- used by the handler ------------------------------------------------------------------

    def rotate_key(self, api_key: str) -> None:
        """Accept ``api_key`` from now on, and no longer the old one (as a key rotation at ALCF)."""
        with self._lock:
            self._api_key = api_key

    def _is_authorized(self, header: str | None) -> bool:
        with self._lock:
            expected = f"Bearer {self._api_key}".encode()
        return hmac.compare_digest((header or "").encode(), expected)

    def _record(self, request: StubRequest) -> None:
        with self._lock:
            self._requests.append(request)


def _handler_for(stub: OpenAIStubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_StubHandler):
        pass

    Handler.stub = stub
    return Handler


class _StubHandler(BaseHTTPRequestHandler):
    stub: OpenAIStubServer
    protocol_version = "HTTP/1.1"
    server_version = "metis-env-stub/1"

    def handle(self) -> None:
        try:
            if isinstance(self.connection, ssl.SSLSocket):
                self.connection.settimeout(10)
                self.connection.do_handshake()
            super().handle()
        except (ssl.SSLError, ConnectionError, TimeoutError):
            pass  # a client that gave up or refused our certificate: nothing to answer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # silent: the tests and the demo print what they mean to

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        body = self._read_json() if method == "POST" else None
        authorized = self.stub._is_authorized(self.headers.get("Authorization"))
        self.stub._record(StubRequest(method, path, authorized, body))
        routes = {
            ("GET", "/v1/models"): self._models,
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/v1/responses"): self._responses,
        }
        route = routes.get((method, path))
        if route is None or (route == self._models and not self.stub.serve_models):
            self._error(404, f"no route for {method} {path}", "not_found")
        elif not authorized:
            self._error(401, "Invalid API key", "invalid_api_key")
        elif body is _INVALID:
            self._error(400, "the request body is not a JSON object", "invalid_json")
        else:
            route(body)

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            return _INVALID
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            return _INVALID
        return body if isinstance(body, dict) else _INVALID

    def _models(self, _body: Any) -> None:
        created = int(time.time())
        data = [{"id": m, "object": "model", "created": created, "owned_by": "metis-env"} for m in self.stub.models]
        self._json(200, {"object": "list", "data": data})

    def _chat(self, body: dict[str, Any]) -> None:
        if self.stub.metis_strict and self._refused_by_metis(body):
            return
        model = body.get("model")
        if model not in self.stub.models:
            self._error(404, f"The model `{model}` does not exist", "model_not_found")
            return
        reply = self.stub.reply
        max_tokens = body.get("max_tokens")
        if isinstance(max_tokens, int) and max_tokens > 0:
            reply = " ".join(reply.split(" ")[:max_tokens])
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if body.get("stream"):
            self._stream(completion_id, created, model, reply)
            return
        self._json(
            200,
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply},
                        "finish_reason": "stop" if reply == self.stub.reply else "length",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": len(reply.split()), "total_tokens": 1 + len(reply.split())},
            },
        )

    def _refused_by_metis(self, body: dict[str, Any]) -> bool:
        """Metis's 422 for a message whose content is not a string (pydantic's error list)."""
        messages = body.get("messages")
        details = [
            {"type": "string_type", "loc": ["body", "messages", index, "content"],
             "msg": "Input should be a valid string", "input": message.get("content")}
            for index, message in enumerate(messages if isinstance(messages, list) else [])
            if isinstance(message, dict) and not isinstance(message.get("content"), (str, type(None)))
        ]
        if details:
            data = json.dumps({"detail": details}).encode()
            self.send_response(422)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        return bool(details)

    def _stream(self, completion_id: str, created: int, model: str, reply: str) -> None:
        def chunk(delta: dict[str, str], finish: str | None) -> bytes:
            data = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return b"data: " + json.dumps(data).encode() + b"\n\n"

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        words = reply.split(" ")
        self.wfile.write(chunk({"role": "assistant", "content": ""}, None))
        for i, word in enumerate(words):
            self.wfile.write(chunk({"content": word if i == 0 else " " + word}, None))
        self.wfile.write(chunk({}, "stop"))
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _responses(self, body: dict[str, Any]) -> None:
        """OpenAI's Responses API, as far as codex uses it: one text message, streamed or not."""
        model = body.get("model")
        if model not in self.stub.models:
            self._error(404, f"The model `{model}` does not exist", "model_not_found")
            return
        response_id, item_id = f"resp_{uuid.uuid4().hex[:24]}", f"msg_{uuid.uuid4().hex[:24]}"
        text = self.stub.reply
        item = {"type": "message", "id": item_id, "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}
        usage = {"input_tokens": 1, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": len(text.split()),
                 "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 1 + len(text.split())}
        response = {"id": response_id, "object": "response", "created_at": int(time.time()), "status": "completed",
                    "model": model, "output": [item], "usage": usage}
        if not body.get("stream"):
            self._json(200, response)
            return
        events = [
            ("response.created", {"response": {**response, "status": "in_progress", "output": []}}),
            ("response.output_item.added", {"output_index": 0, "item": {**item, "status": "in_progress", "content": []}}),
            ("response.output_text.delta", {"item_id": item_id, "output_index": 0, "content_index": 0, "delta": text}),
            ("response.output_item.done", {"output_index": 0, "item": item}),
            ("response.completed", {"response": response}),
        ]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        for name, data in events:
            self.wfile.write(f"event: {name}\ndata: ".encode() + json.dumps({"type": name, **data}).encode() + b"\n\n")
        self.wfile.flush()

    def _error(self, status: int, message: str, code: str) -> None:
        self._json(status, {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}})

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


_INVALID = object()
