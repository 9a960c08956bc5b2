"""``python -m idf_nvs_secure``: the same command line as ``idf-nvs-secure``."""

from .app.cli import main

main()
