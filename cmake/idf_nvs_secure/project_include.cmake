# idf_nvs_secure as an ESP-IDF component: ESP-IDF includes this file while it processes
# the project, after kconfgen wrote the build's sdkconfig.json and before any component's
# CMakeLists.txt (so before partition_table's reads the partition CSV).
include(${CMAKE_CURRENT_LIST_DIR}/idf_nvs_secure.cmake)
idf_nvs_secure_configure()
