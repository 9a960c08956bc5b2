"""Jinja2 templates for text outputs (shipped inside the package as idf_nvs_secure.templates)."""
