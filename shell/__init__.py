"""The shell integration files, installed as the package ``metis_env.shell`` (see pyproject.toml).

A regular package rather than a namespace one, so that ``importlib.resources`` finds the files on
every supported Python.
"""
