"""Making artifacts: the bytes of an output plan, host flash encryption, flashing
settings, and what ESP-IDF's CMake build writes, reads and registers."""
