"""CMake module and ESP-IDF component (shipped inside the package as idf_nvs_secure.cmake); the component is the folder idf_nvs_secure/, so ESP-IDF names it idf_nvs_secure."""
