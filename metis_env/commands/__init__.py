"""The command bodies: one module per group of commands, plain functions over the store and settings,
no click (``cli.py`` is the only click module and wraps these; ``main.py``'s fast path calls
``export`` directly).

    export.py        export, get, run (the hot path: standard library only at import)
    endpoints.py     import, list, and the lines a change of the store prints
    sessions.py      sync, login, logout, and the tool configs refreshed after them
    config.py        config list / set / unset, and the default a forget drops
    status.py        status, and check's targets; check_report.py: check's results
    doctor.py        doctor (doctor_ssh.py: its SSH and OpenSSH findings)
    hooks.py         hook, and the completion candidates
    kernel.py        kernel install
    demo.py          demo (demo_gateway.py: its gateway half; demo_serve.py: demo --serve)
    proxy.py         proxy start / stop / status (the node broker, ``metis_env/broker/``)
    store_move.py    store move (keys from one secret store to the other)

The proxy of ``run --proxy`` is ``metis_env/proxy.py``, in this layer too.
"""
