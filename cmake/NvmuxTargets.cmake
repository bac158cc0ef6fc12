# Helpers shared by every layer's CMakeLists.

# nvmux_library(NAME SOURCES... [DEPS ...]) — a static library of nvmux's own code.
function(nvmux_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/include PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS} nvmux_sanitizers PRIVATE nvmux_warnings)
endfunction()

# nvmux_executable(NAME SOURCES... [DEPS ...]) — an app, bench or tool binary.
function(nvmux_executable name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} nvmux_sanitizers nvmux_warnings)
endfunction()

# nvmux_gtest(NAME SOURCES... DEPS ... LABELS ... [TIMEOUT s]) — a GoogleTest binary whose cases
# CTest discovers one by one, each carrying LABELS (unit, stress, concurrency, integration).
function(nvmux_gtest name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gtest_main GTest::gmock
                                        nvmux_sanitizers nvmux_warnings)
  gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST DISCOVERY_TIMEOUT 60 TEST_LIST ${name}_TESTS
                       PROPERTIES TIMEOUT ${ARG_TIMEOUT})
  # Labels are a list, which gtest_discover_tests' PROPERTIES flattens; set them from a file CTest
  # reads after the discovered tests are defined instead.
  # A binary a build left out (the TSan preset builds only concurrency_tests) has no test list.
  set(labels_file ${CMAKE_CURRENT_BINARY_DIR}/${name}_labels.cmake)
  file(WRITE ${labels_file} "if(${name}_TESTS)\n  set_tests_properties(\${${name}_TESTS} PROPERTIES LABELS \"${ARG_LABELS}\")\nendif()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES ${labels_file})
  if("concurrency" IN_LIST ARG_LABELS)
    set_property(GLOBAL APPEND PROPERTY NVMUX_CONCURRENCY_TESTS ${name})
  endif()
endfunction()
