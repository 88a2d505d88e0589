"""The broker's bookkeeping: which stored endpoint a request's model goes to (``Router``, re-reading
the store when its metadata file changes) and what ``proxy status`` counts (``Stats``). Split from
engine.py, which serves the requests. Standard library only."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping

from . import metis_compat


class Router:
    """A request's model -> the endpoint that serves it: the selected endpoint when it serves that
    model, else the one stored endpoint that serves it; the selected one when the model is absent,
    unknown or served by several others. The store is read again when its metadata file changes."""

    def __init__(self, store, default: str) -> None:
        self._store = store
        self.default = default
        self._lock = threading.Lock()
        self._stamp: object = None
        self._checked = 0.0
        self.endpoints: dict = {}
        self._serving: dict[str, list[str]] = {}
        self.reload()

    def reload(self) -> None:
        with self._lock:
            now = time.monotonic()
            if self.endpoints and now - self._checked < 1.0:
                return
            self._checked = now
            stamp = _stamp_of(os.path.join(self._store.directory, "endpoints.yaml"))
            if stamp == self._stamp and self.endpoints:
                return
            endpoints = dict(self._store.endpoints())
            serving: dict[str, list[str]] = {}
            for stored in endpoints.values():
                for name in stored.models:
                    serving.setdefault(name, []).append(stored.id)
            self._stamp, self.endpoints, self._serving = stamp, endpoints, serving

    def route(self, model: object, selected: str) -> str:
        if not isinstance(model, str) or model in self.endpoints[selected].models:
            return selected
        serving = self._serving.get(model, [])
        return serving[0] if len(serving) == 1 else selected

    def models_list(self, selected: str) -> dict:
        """``GET /v1/models`` in OpenAI's shape: every stored model, the selected endpoint's first."""
        order = [selected] + [i for i in self.endpoints if i != selected]
        data, seen = [], set()
        for endpoint_id in order:
            for name in self.endpoints[endpoint_id].models:
                if name not in seen:
                    seen.add(name)
                    data.append({"id": name, "object": "model", "created": 0, "owned_by": f"metis-env:{endpoint_id}"})
        return {"object": "list", "data": data}


def _stamp_of(path: str) -> object:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino)


class Stats:
    """What ``proxy status`` reports."""

    def __init__(self) -> None:
        self.started = time.time()
        self.requests = 0
        self.absorbed = 0  # upstream 429s held and retried instead of passed on
        self.holding = 0  # requests waiting out a back-off now
        self.adapted = dict.fromkeys(metis_compat.CHANGES, 0)  # changes made for Metis, by kind
        self.last_active = time.monotonic()
        self.lock = threading.Lock()

    def count(self, field: str, by: int = 1) -> None:
        with self.lock:
            setattr(self, field, getattr(self, field) + by)
            self.last_active = time.monotonic()

    def count_adapted(self, changed: Mapping[str, int]) -> None:
        with self.lock:
            for name, by in changed.items():
                self.adapted[name] += by
