# scripts/: setup-deps against stand-in dpkg-query and apt-get (no package manager is touched).
add_test(NAME setup_deps_test
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/unit/scripts/setup_deps_test.sh
                 ${PROJECT_SOURCE_DIR}/scripts/setup-deps)
set_tests_properties(setup_deps_test PROPERTIES LABELS unit TIMEOUT 60)

# scripts/nvmux-setup against a stand-in sysfs tree and mount table (no device is touched).
add_test(NAME nvmux_setup_test
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/unit/scripts/nvmux_setup_test.sh ${PROJECT_SOURCE_DIR}/scripts/nvmux-setup)
set_tests_properties(nvmux_setup_test PROPERTIES LABELS unit TIMEOUT 60)
