"""``python -m idf_nvs_secure``: the same command line as ``idf-nvs-secure``."""

from .cli import main

main()
