"""CMake module and ESP-IDF component (shipped inside the package as idf_nvs_secure.cmake)."""
