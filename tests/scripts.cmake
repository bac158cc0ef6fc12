# scripts/: setup-deps against stand-in dpkg-query and apt-get (no package manager is touched).
add_test(NAME setup_deps_test
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/unit/scripts/setup_deps_test.sh
                 ${PROJECT_SOURCE_DIR}/scripts/setup-deps)
set_tests_properties(setup_deps_test PROPERTIES LABELS unit TIMEOUT 60)
