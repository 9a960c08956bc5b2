"""On-flash formats: one pure module per binary layout (bytes in, bytes out)."""
