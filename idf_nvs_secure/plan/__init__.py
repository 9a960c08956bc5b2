"""Plans: the NVS security plan resolved from sdkconfig, its checks, and the output plan
that every command reads (which files exist, from which inputs and keys)."""
