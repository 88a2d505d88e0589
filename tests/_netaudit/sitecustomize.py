"""Record every connection and name lookup this Python process attempts; refuse all but one address.

Put this folder on PYTHONPATH and set METIS_TEST_NET_LOG to a file: Python imports this module at
start-up (site.py imports ``sitecustomize``) in every interpreter that inherits the environment, so a
client library's process and any Python child it starts are audited. Each attempt appends one JSON
line ``{"event": ..., "host": ..., "port": ...}`` to the log, whichever library or thread made it.

The audit hook sits below every HTTP library (httpx, requests, aiohttp, urllib), so what it records
does not depend on whether a client honours proxy variables. METIS_TEST_NET_ALLOW (``HOST:PORT``) is
the one address a test expects; an attempt to reach anything else is recorded and then refused on
the spot, and the process ends there with status 97 (``os._exit``, from whichever thread tried): nothing
leaves even on a machine with a network, and a client that would retry with back-off (openai-agents'
trace exporter waits up to a minute, the SDKs retry twice) stops at its first attempt.
"""

import os

REFUSED_EXIT = 97


def _install():
    log_path = os.environ.get("METIS_TEST_NET_LOG")
    if not log_path:
        return
    import json
    import sys

    allowed_host, _, allowed_port = os.environ.get("METIS_TEST_NET_ALLOW", "").rpartition(":")
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    watched = {"socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
               "socket.gethostbyaddr", "socket.sendto", "socket.sendmsg"}

    def allowed(host, port):
        if port is None or port == 0:  # a name lookup without a port: judged by its host alone
            return host == allowed_host
        return host == allowed_host and str(port) == allowed_port

    def hook(event, args):
        if event not in watched:
            return
        if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
            address = args[1] if len(args) > 1 else None
            if not isinstance(address, tuple):  # AF_UNIX paths and connected sendmsg: not the network
                return
            host, port = address[0], address[1]
        elif event == "socket.getaddrinfo":
            host, port = args[0], args[1]
        else:
            host, port = args[0], None
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        ok = allowed(host, port)
        record = {"event": event, "host": host, "port": port if isinstance(port, (int, type(None))) else str(port)}
        os.write(fd, (json.dumps(record) + "\n").encode())
        if not ok:
            os.write(2, f"network audit: refused {event} {host}:{port}; exiting 97\n".encode())
            os._exit(REFUSED_EXIT)

    sys.addaudithook(hook)


_install()
