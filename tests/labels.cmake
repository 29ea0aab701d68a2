# Run by ctest after the discovered integration tests are added (tests/CMakeLists.txt puts it in
# TEST_INCLUDE_FILES): each test of a group gets that group's labels.
foreach(group hosts slow slow_hosts)
  string(REPLACE "_" ";" labels "integration_${group}")
  foreach(test IN LISTS orq_${group}_names)
    set_tests_properties("${test}" PROPERTIES LABELS "${labels}")
  endforeach()
endforeach()
