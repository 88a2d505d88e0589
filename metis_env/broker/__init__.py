"""The loopback proxy that holds the real keys for long jobs: the server (``engine``), its defences
(``guard``), its side toward the endpoints (``upstream``), and the node broker's life (``runtime``).
``run --proxy`` (metis_env/proxy.py) and ``metis-env proxy`` use it."""
