"""The command bodies: plain functions the click layer (cli.py) calls, one module per command group."""
