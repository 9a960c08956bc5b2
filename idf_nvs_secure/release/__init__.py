"""Factory outputs: reproducible release bundles and per-device manufacturing batches."""
