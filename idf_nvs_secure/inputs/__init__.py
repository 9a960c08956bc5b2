"""The user's inputs: partitions YAML/CSV, NVS values YAML/CSV, the project file with its
products, key sources and master secrets, and the JSON Schemas that check them."""
