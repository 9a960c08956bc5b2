# TEST DOUBLE of the few ESP-IDF CMake functions cmake/idf_nvs_secure.cmake uses, and of
# the order in which ESP-IDF's project() runs things.  Not ESP-IDF: see README.md.
#
# Inputs (cache variables set by the test): PYTHON, IDF_DOUBLE_LOG,
# IDF_DOUBLE_SDKCONFIG_JSON, IDF_DOUBLE_TARGET, IDF_DOUBLE_DEV_MODE (creates
# encrypted-flash), IDF_DOUBLE_MINIMAL_BUILD, IDF_DOUBLE_IDF_VERSION (6 or 5).

function(__double_log)
    string(REPLACE ";" "," fields "${ARGN}")
    file(APPEND "${IDF_DOUBLE_LOG}" "${fields}\n")
endfunction()

function(idf_build_set_property property value)
    set_property(GLOBAL PROPERTY "IDF_DOUBLE_${property}" "${value}")
endfunction()

function(idf_build_get_property var property)
    get_property(value GLOBAL PROPERTY "IDF_DOUBLE_${property}")
    set(${var} "${value}" PARENT_SCOPE)
endfunction()

function(idf_component_get_property var component property)
    set(${var} "double-${component}-${property}" PARENT_SCOPE)
endfunction()

function(idf_component_register)
    __double_log("idf_component_register|${CMAKE_CURRENT_SOURCE_DIR}|${ARGN}")
endfunction()

# Like ESP-IDF's: the failing target also removes a file CMake included, so the next
# build re-runs the configure step.
function(fail_at_build_time target line0)
    __double_log("fail_at_build_time|${target}|${line0};${ARGN}")
    set(echo)
    foreach(line ${line0} ${ARGN})
        list(APPEND echo COMMAND ${CMAKE_COMMAND} -E echo "${line}")
    endforeach()
    set(stamp "${CMAKE_CURRENT_BINARY_DIR}/${target}.rerun.cmake")
    file(WRITE "${stamp}" "")
    include("${stamp}")
    add_custom_target(${target} ALL ${echo} COMMAND ${CMAKE_COMMAND} -E remove "${stamp}"
                      COMMAND ${CMAKE_COMMAND} -E false VERBATIM)
endfunction()

if(NOT IDF_DOUBLE_IDF_VERSION STREQUAL "5")
    function(esp_partition_register_target partition binary)
        __double_log("esp_partition_register_target|${partition}|${binary}|${ARGN}")
        cmake_parse_arguments(arg "ALWAYS_PLAINTEXT;FLASH_IN_PROJECT" ""
                              "DEPENDS;FLASH_IN_PROJECT_DEPENDENCY_TARGETS" ${ARGN})
        if(IDF_DOUBLE_TARGET STREQUAL "linux")  # ESP-IDF: preload into the emulated flash
            return()
        endif()
        add_custom_target(${partition}-flash COMMAND ${CMAKE_COMMAND} -E echo "flash ${binary}")
        add_dependencies(${partition}-flash ${arg_DEPENDS})
        if(arg_FLASH_IN_PROJECT)
            set_property(TARGET flash APPEND PROPERTY DOUBLE_IMAGES "${partition}=${binary}")
            add_dependencies(flash ${arg_DEPENDS})
        endif()
    endfunction()
else()
    function(esptool_py_flash_target target main_args sub_args)
        __double_log("esptool_py_flash_target|${target}|${main_args}|${sub_args}|${ARGN}")
        if(NOT TARGET ${target})
            add_custom_target(${target})
        endif()
    endfunction()
    function(esptool_py_flash_to_partition target partition binary)
        __double_log("esptool_py_flash_to_partition|${target}|${partition}|${binary}")
    endfunction()
endif()

# What including ESP-IDF's project.cmake sets up before project().
idf_build_set_property(PYTHON "${PYTHON}")
idf_build_set_property(IDF_TARGET "${IDF_DOUBLE_TARGET}")

macro(project name)
    _project(${name} NONE)
    idf_build_set_property(PROJECT_DIR "${CMAKE_SOURCE_DIR}")
    idf_build_set_property(BUILD_DIR "${CMAKE_BINARY_DIR}")
    # kconfgen
    configure_file("${IDF_DOUBLE_SDKCONFIG_JSON}" "${CMAKE_BINARY_DIR}/config/sdkconfig.json" COPYONLY)
    idf_build_set_property(SDKCONFIG_JSON "${CMAKE_BINARY_DIR}/config/sdkconfig.json")
    # __build_create_flash_targets
    if(NOT IDF_DOUBLE_TARGET STREQUAL "linux")
        add_custom_target(flash)
        if(IDF_DOUBLE_DEV_MODE)
            add_custom_target(encrypted-flash)
        endif()
    endif()
    # partition_table's project_include.cmake: the CSV must exist now
    if(EXISTS "${CMAKE_SOURCE_DIR}/partitions.csv")
        __double_log("partition_table_project_include|csv exists")
    else()
        __double_log("partition_table_project_include|csv missing")
    endif()
    # each component's project_include.cmake, then each component's CMakeLists.txt
    if(NOT IDF_DOUBLE_MINIMAL_BUILD)
        foreach(COMPONENT_DIR ${EXTRA_COMPONENT_DIRS})
            include("${COMPONENT_DIR}/project_include.cmake")
        endforeach()
        foreach(dir ${EXTRA_COMPONENT_DIRS})
            get_filename_component(component "${dir}" NAME)
            add_subdirectory("${dir}" "${CMAKE_BINARY_DIR}/esp-idf/${component}")
        endforeach()
    endif()
    __double_log("project_done|${name}")
endmacro()
