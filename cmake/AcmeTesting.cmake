# acme_add_test(NAME LABELS l... LIBS lib... SOURCES src... [TIMEOUT s])
# One gtest binary; each TEST becomes a ctest test with the label(s) and a timeout.
include(GoogleTest)

function(acme_add_test name)
  cmake_parse_arguments(arg "" "TIMEOUT" "LABELS;LIBS;SOURCES" ${ARGN})
  if(NOT arg_TIMEOUT)
    set(arg_TIMEOUT 30)
  endif()
  add_executable(${name} ${arg_SOURCES})
  target_link_libraries(${name} PRIVATE ${arg_LIBS} GTest::gmock GTest::gtest_main
                                        $<BUILD_INTERFACE:acme_warnings>)
  gtest_discover_tests(${name}
    PROPERTIES LABELS "${arg_LABELS}" TIMEOUT ${arg_TIMEOUT}
    DISCOVERY_TIMEOUT 60)
endfunction()
