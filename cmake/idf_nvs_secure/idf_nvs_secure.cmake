# idf_nvs_secure.cmake: wires idf_nvs_secure into ESP-IDF's CMake build.
#
# A thin adapter.  `python -m idf_nvs_secure cmake-configure` decides everything (which
# images exist, what they are built from, how each is flashed, what to tell the user)
# and writes it as a CMake include file of plain variables; the functions below only
# turn those variables into ESP-IDF calls, custom commands and targets.
#
# Use it in either of two ways:
#
# 1. Include it from the project's CMakeLists.txt, after ESP-IDF's project.cmake and
#    before project():
#
#        include($ENV{IDF_PATH}/tools/cmake/project.cmake)
#        execute_process(COMMAND ${PYTHON} -m idf_nvs_secure cmake-dir
#                        OUTPUT_VARIABLE NVS_SECURE_DIR OUTPUT_STRIP_TRAILING_WHITESPACE
#                        COMMAND_ERROR_IS_FATAL ANY)
#        include(${NVS_SECURE_DIR}/idf_nvs_secure.cmake)
#        project(my_project)
#
#    This writes the partition CSV generated from partitions.yaml before ESP-IDF looks
#    for it, and adds the folder as an ESP-IDF component (EXTRA_COMPONENT_DIRS).  When a
#    trimmed build leaves the component out (MINIMAL_BUILD, COMPONENTS), the same steps
#    run at the end of the project's CMakeLists.txt instead.
#
# 2. Or only add the folder as a component: list(APPEND EXTRA_COMPONENT_DIRS
#    ${NVS_SECURE_DIR}) (or a component-manager dependency on it; with MINIMAL_BUILD,
#    `main` must require it).  The component's project_include.cmake then writes the
#    CSV, after partition_table's project_include.cmake has looked for it: on the very
#    first configure, ESP-IDF warns once that the CSV does not exist yet.
#
# The product is the cache variable NVS_SECURE_PRODUCT (idf.py -DNVS_SECURE_PRODUCT=pro;
# empty: the project's default_product).
#
# ESP-IDF functions called: idf_build_get_property, idf_component_get_property,
# fail_at_build_time, esp_partition_register_target (ESP-IDF >= 6) or, before it
# existed, esptool_py_flash_target and esptool_py_flash_to_partition.

include_guard(GLOBAL)

set(IDF_NVS_SECURE_CMAKE_DIR "${CMAKE_CURRENT_LIST_DIR}" CACHE INTERNAL
    "Folder of idf_nvs_secure's CMake module and ESP-IDF component")
set(NVS_SECURE_PRODUCT "" CACHE STRING
    "idf_nvs_secure: product from nvs_secure.yaml (empty: its default_product)")

# __idf_nvs_secure_command(<var> <subcommand> ...)
#
# The command line `${PYTHON} -m idf_nvs_secure <subcommand> ...`.
function(__idf_nvs_secure_command var subcommand)
    idf_build_get_property(python PYTHON)
    set(${var} ${python} -m idf_nvs_secure ${subcommand} ${ARGN} PARENT_SCOPE)
endfunction()

# __idf_nvs_secure_early_digest(<var> <build_dir> <product>)
#
# A digest of everything the early pass reads, from the names the last configure step
# recorded: the project and partitions files, the generated CSV itself, the sdkconfig
# and defaults files, the product and the target.  Empty when nothing was recorded.
function(__idf_nvs_secure_early_digest var build_dir product)
    set(config "${build_dir}/nvs_secure/config.cmake")
    set(${var} "" PARENT_SCOPE)
    if(NOT EXISTS "${config}")
        return()
    endif()
    include("${config}")
    if(NOT NVS_SECURE_PARTITION_CSV OR NOT EXISTS "${NVS_SECURE_PARTITION_CSV}")
        return()
    endif()
    # Only the requested product, the target and the files' contents count, by absolute
    # path (ESP-IDF rewrites SDKCONFIG and SDKCONFIG_DEFAULTS in project()).
    set(text "${product}|${IDF_TARGET}|${IDF_NVS_SECURE_CMAKE_DIR}")
    set(candidates ${NVS_SECURE_CONFIGURE_DEPENDS} "${NVS_SECURE_PARTITION_CSV}" ${SDKCONFIG}
        "${CMAKE_SOURCE_DIR}/sdkconfig" "${CMAKE_SOURCE_DIR}/sdkconfig.defaults"
        ${SDKCONFIG_DEFAULTS} $ENV{SDKCONFIG_DEFAULTS})
    set(files)
    foreach(file IN LISTS candidates)
        if(file STREQUAL "")
            continue()
        endif()
        get_filename_component(file "${file}" ABSOLUTE BASE_DIR "${CMAKE_SOURCE_DIR}")
        if(EXISTS "${file}" AND NOT IS_DIRECTORY "${file}")
            list(APPEND files "${file}")
        endif()
    endforeach()
    list(REMOVE_DUPLICATES files)
    list(SORT files)
    foreach(file IN LISTS files)
        file(SHA256 "${file}" sum)
        string(APPEND text "|${file}=${sum}")
    endforeach()
    string(SHA256 digest "${text}")
    set(${var} "${digest}" PARENT_SCOPE)
endfunction()

# __idf_nvs_secure_early_csv()
#
# Before project(): write the partition CSV from partitions.yaml with the configuration
# known so far (sdkconfig or the defaults), so that ESP-IDF's partition_table finds it.
# The configure step below writes it again from the build's final sdkconfig.json when
# that differs.  Failures are left for that step to report.  Skipped (no Python run)
# when nothing it reads changed since the last configure step wrote the CSV.
function(__idf_nvs_secure_early_csv)
    set(stamp "${CMAKE_BINARY_DIR}/nvs_secure/early.sha256")
    if(EXISTS "${stamp}")
        __idf_nvs_secure_early_digest(digest "${CMAKE_BINARY_DIR}" "${NVS_SECURE_PRODUCT}")
        file(READ "${stamp}" recorded)
        if(digest AND recorded STREQUAL digest)
            message(VERBOSE "idf_nvs_secure: partition CSV up to date; early pass skipped")
            return()
        endif()
    endif()
    set(args ${CMAKE_SOURCE_DIR} --build-dir ${CMAKE_BINARY_DIR} --csv-only)
    if(SDKCONFIG AND EXISTS "${SDKCONFIG}")
        list(APPEND args --sdkconfig ${SDKCONFIG})
    endif()
    if(NVS_SECURE_PRODUCT)
        list(APPEND args --product ${NVS_SECURE_PRODUCT})
    endif()
    __idf_nvs_secure_command(command cmake-configure ${args})
    if(SDKCONFIG_DEFAULTS)
        set(command ${CMAKE_COMMAND} -E env "SDKCONFIG_DEFAULTS=${SDKCONFIG_DEFAULTS}" ${command})
    endif()
    execute_process(COMMAND ${command} RESULT_VARIABLE result OUTPUT_QUIET ERROR_QUIET)
    if(NOT result EQUAL 0)
        message(VERBOSE "idf_nvs_secure: early partition CSV not written (${result})")
    endif()
endfunction()

# idf_nvs_secure_configure([PRODUCT <name>])
#
# Configure-time step, from the component's project_include.cmake: runs
# `idf-nvs-secure cmake-configure` against the build's sdkconfig.json, includes what it
# wrote, makes the project's YAML files re-run the configure step, and prints the
# build's messages.  Errors do not stop the configure step (menuconfig must still
# work): the build fails with them instead (idf_nvs_secure_add_images).
function(idf_nvs_secure_configure)
    cmake_parse_arguments(arg "AFTER_PROJECT" "PRODUCT" "" ${ARGN})
    if(NOT DEFINED arg_PRODUCT)
        set(arg_PRODUCT "${NVS_SECURE_PRODUCT}")
    endif()
    idf_build_get_property(project_dir PROJECT_DIR)
    idf_build_get_property(build_dir BUILD_DIR)
    idf_build_get_property(sdkconfig_json SDKCONFIG_JSON)
    set(config "${build_dir}/nvs_secure/config.cmake")

    set(args ${project_dir} --build-dir ${build_dir} --sdkconfig ${sdkconfig_json} -o ${config})
    if(arg_PRODUCT)
        list(APPEND args --product ${arg_PRODUCT})
    endif()
    __idf_nvs_secure_command(command cmake-configure ${args})
    execute_process(COMMAND ${command} RESULT_VARIABLE result
                    OUTPUT_VARIABLE stdout ERROR_VARIABLE stderr)
    if(NOT result EQUAL 0)
        string(REPLACE ";" " " shown "${command}")
        message(FATAL_ERROR "idf_nvs_secure: `${shown}` failed (exit status ${result}):\n"
            "${stderr}Is idf_nvs_secure installed in the Python ESP-IDF builds with? "
            "(pip install idf-nvs-secure)")
    endif()

    set_property(GLOBAL PROPERTY IDF_NVS_SECURE_CONFIG "${config}")
    include("${config}")
    # What the next configure's early pass compares with, to skip itself.
    __idf_nvs_secure_early_digest(digest "${build_dir}" "${arg_PRODUCT}")
    if(digest)
        file(WRITE "${build_dir}/nvs_secure/early.sha256" "${digest}")
    endif()
    # Only what changes the table or the plan re-runs the configure step; values files
    # and the files they name are DEPENDS of the image command (idf_nvs_secure_add_images).
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${NVS_SECURE_CONFIGURE_DEPENDS})
    if(arg_AFTER_PROJECT AND NVS_SECURE_CSV_CHANGED)
        # ESP-IDF has read the CSV of the early pass already: build again from the new one.
        fail_at_build_time(nvs_secure_partition_csv
            "idf_nvs_secure: ${NVS_SECURE_PARTITION_CSV} changed after ESP-IDF read it."
            "Build again: CMake's configure step re-runs with the new table.")
    endif()
    if(NOT NVS_SECURE_ACTIVE)
        foreach(line IN LISTS NVS_SECURE_MESSAGES)
            message(STATUS "idf_nvs_secure: ${line}")
        endforeach()
        return()
    endif()
    if(NVS_SECURE_PRODUCT)
        message(STATUS "idf_nvs_secure: product ${NVS_SECURE_PRODUCT}, target ${NVS_SECURE_TARGET}")
    endif()
    foreach(line IN LISTS NVS_SECURE_MESSAGES)
        message(STATUS "idf_nvs_secure: ${line}")
    endforeach()
    foreach(line IN LISTS NVS_SECURE_WARNINGS)
        message(WARNING "idf_nvs_secure: ${line}")
    endforeach()
    foreach(line IN LISTS NVS_SECURE_ERRORS)
        message(WARNING "idf_nvs_secure: error: ${line}\nThe build will fail until this is fixed.")
    endforeach()
endfunction()

# __idf_nvs_secure_register(<partition> <file> DEPENDS <target>
#                           [ALWAYS_PLAINTEXT] [FLASH_IN_PROJECT])
#
# Registers an image with ESP-IDF's flash targets, as nvs_create_partition_image() does:
# `<partition>-flash` (and `encrypted-<partition>-flash`), flasher_args.json and
# flash_args with FLASH_IN_PROJECT, or the emulated flash on the linux target.
function(__idf_nvs_secure_register partition file)
    cmake_parse_arguments(arg "ALWAYS_PLAINTEXT;FLASH_IN_PROJECT" "" "DEPENDS" ${ARGN})
    if(COMMAND esp_partition_register_target)
        set(options DEPENDS ${arg_DEPENDS})
        if(arg_ALWAYS_PLAINTEXT)
            list(APPEND options ALWAYS_PLAINTEXT)
        endif()
        if(arg_FLASH_IN_PROJECT)
            list(APPEND options FLASH_IN_PROJECT)
            if(TARGET encrypted-flash)
                list(APPEND options FLASH_IN_PROJECT_DEPENDENCY_TARGETS encrypted-flash)
            endif()
        endif()
        esp_partition_register_target(${partition} "${file}" ${options})
        return()
    endif()

    # ESP-IDF 5.x: the calls its nvs_create_partition_image() made.
    idf_build_get_property(target IDF_TARGET)
    if(target STREQUAL "linux")
        message(STATUS "idf_nvs_secure: this ESP-IDF cannot preload ${file} into the linux "
            "target's emulated flash (esp_partition_register_target, ESP-IDF v6.1 and later): the app starts with an empty NVS")
        return()
    endif()
    set(plaintext)
    if(arg_ALWAYS_PLAINTEXT)
        set(plaintext ALWAYS_PLAINTEXT)
    endif()
    idf_component_get_property(main_args esptool_py FLASH_ARGS)
    idf_component_get_property(sub_args esptool_py FLASH_SUB_ARGS)
    esptool_py_flash_target(${partition}-flash "${main_args}" "${sub_args}" ${plaintext})
    esptool_py_flash_to_partition(${partition}-flash "${partition}" "${file}")
    add_dependencies(${partition}-flash ${arg_DEPENDS})
    if(arg_FLASH_IN_PROJECT)
        esptool_py_flash_to_partition(flash "${partition}" "${file}")
        add_dependencies(flash ${arg_DEPENDS})
        if(TARGET encrypted-flash)
            add_dependencies(encrypted-flash ${arg_DEPENDS})
        endif()
    endif()
endfunction()

# idf_nvs_secure_add_images()
#
# Build-time step, from the component's CMakeLists.txt (after idf_nvs_secure_configure):
# one custom command with the exact OUTPUT and DEPENDS the configure step listed, the
# target nvs_secure_images (part of the default build), the target nvs-secure-gen
# (regenerate now), and each image's flash registration.
function(idf_nvs_secure_add_images)
    get_property(config GLOBAL PROPERTY IDF_NVS_SECURE_CONFIG)
    if(NOT config)
        message(FATAL_ERROR "idf_nvs_secure: call idf_nvs_secure_configure() first")
    endif()
    include("${config}")
    if(NOT NVS_SECURE_ACTIVE)
        return()
    endif()
    if(NVS_SECURE_ERRORS)
        fail_at_build_time(nvs_secure_images
            "idf_nvs_secure cannot build the NVS images:" ${NVS_SECURE_ERRORS})
        return()
    endif()

    set(args ${NVS_SECURE_PROJECT_DIR} --out-dir ${NVS_SECURE_OUT_DIR}
        --keystore ${NVS_SECURE_KEYSTORE})
    if(NVS_SECURE_SDKCONFIG)
        list(APPEND args --sdkconfig ${NVS_SECURE_SDKCONFIG})
    endif()
    if(NVS_SECURE_PRODUCT)
        list(APPEND args --product ${NVS_SECURE_PRODUCT})
    endif()
    foreach(name IN LISTS NVS_SECURE_IMAGE_NAMES)
        list(APPEND args --image ${name})
    endforeach()
    __idf_nvs_secure_command(command cmake-build ${args})
    __idf_nvs_secure_command(stamp_command cmake-stamp ${NVS_SECURE_STAMP_SPEC})

    # Runs on every build and rewrites the stamp only when an environment variable the
    # outputs read (a value's env:, the master secret) changed: make cannot see those.
    add_custom_target(nvs_secure_stamp
        COMMAND ${stamp_command}
        BYPRODUCTS ${NVS_SECURE_STAMP}
        COMMENT ""
        VERBATIM)
    if(NVS_SECURE_OUTPUTS)
        add_custom_command(
            OUTPUT ${NVS_SECURE_OUTPUTS}
            COMMAND ${command}
            DEPENDS ${NVS_SECURE_DEPENDS} ${NVS_SECURE_MANIFEST} ${NVS_SECURE_STAMP}
            COMMENT "idf_nvs_secure: generating NVS images (product ${NVS_SECURE_PRODUCT})"
            VERBATIM)
        add_custom_target(nvs_secure_images ALL DEPENDS ${NVS_SECURE_OUTPUTS})
        add_dependencies(nvs_secure_images nvs_secure_stamp)
        set_property(DIRECTORY APPEND PROPERTY ADDITIONAL_CLEAN_FILES ${NVS_SECURE_OUT_DIR})
    else()
        add_custom_target(nvs_secure_images)
    endif()
    add_custom_target(nvs-secure-gen
        COMMAND ${command}
        COMMENT "idf_nvs_secure: regenerating NVS images (product ${NVS_SECURE_PRODUCT})"
        USES_TERMINAL
        VERBATIM)

    foreach(n IN LISTS NVS_SECURE_IMAGES)
        if(NOT NVS_SECURE_IMAGE_${n}_REGISTER)
            continue()
        endif()
        set(options DEPENDS nvs_secure_images)
        if(NVS_SECURE_IMAGE_${n}_ALWAYS_PLAINTEXT)
            list(APPEND options ALWAYS_PLAINTEXT)
        endif()
        if(NVS_SECURE_IMAGE_${n}_FLASH_IN_PROJECT)
            list(APPEND options FLASH_IN_PROJECT)
        endif()
        __idf_nvs_secure_register(${NVS_SECURE_IMAGE_${n}_PARTITION}
                                  "${NVS_SECURE_IMAGE_${n}_FILE}" ${options})
    endforeach()
endfunction()

# __idf_nvs_secure_after_project()
#
# Deferred to the end of the project's CMakeLists.txt by the top-level include: when the
# component was not part of the build, configure and add the images from the project,
# as nvs_create_partition_image() called after project() would.
function(__idf_nvs_secure_after_project)
    get_property(config GLOBAL PROPERTY IDF_NVS_SECURE_CONFIG)
    if(config)
        return()  # the component did it
    endif()
    message(STATUS "idf_nvs_secure: its component is not in this build (MINIMAL_BUILD or "
        "COMPONENTS): adding the NVS images from the project instead")
    idf_nvs_secure_configure(AFTER_PROJECT)
    idf_nvs_secure_add_images()
endfunction()

# Included from the project's CMakeLists.txt: write the CSV early, become a component.
if(CMAKE_PARENT_LIST_FILE STREQUAL "${CMAKE_SOURCE_DIR}/CMakeLists.txt")
    if(DEFINED PROJECT_NAME)  # (CMAKE_PROJECT_NAME is cached: set on re-runs too)
        message(FATAL_ERROR "idf_nvs_secure: include idf_nvs_secure.cmake before project()")
    endif()
    if(NOT COMMAND idf_build_get_property)
        message(FATAL_ERROR "idf_nvs_secure: include ESP-IDF's tools/cmake/project.cmake first")
    endif()
    __idf_nvs_secure_early_csv()
    list(APPEND EXTRA_COMPONENT_DIRS "${IDF_NVS_SECURE_CMAKE_DIR}")
    cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL __idf_nvs_secure_after_project)
endif()
