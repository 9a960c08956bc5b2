"""Inspection: reading images back, the flash map, the HTML report and plan text."""
