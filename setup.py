"""The console command, the one thing pyproject.toml cannot say: on POSIX a launcher of our own
(bin/metis-env), whose start-up imports nothing before metis_env; pip's generated console-script launcher
imports ``re`` first, several ms of every ``export`` in every new shell. Windows keeps pip's .exe launcher
(an extension-less script does not run there)."""

import sys

from setuptools import setup

if sys.platform == "win32":
    setup(entry_points={"console_scripts": ["metis-env = metis_env.main:entry"]})
else:
    setup(scripts=["bin/metis-env"], entry_points={"console_scripts": []})  # pyproject: scripts are dynamic
