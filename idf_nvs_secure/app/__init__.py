"""Adapters: the click command line and the idf.py extension.

Nothing in this package is API: scripts call :mod:`idf_nvs_secure`, and no module outside
``app`` imports from here.
"""
