# Thin wrappers that keep every target to a few lines.
#
#   crm_cc_library(NAME n SRCS a.cc HDRS a.h DEPS x y [PRIVATE_DEPS z] [TESTONLY])
#   crm_cc_binary(NAME n SRCS main.cc DEPS x [TESTONLY])
#   crm_cc_test(NAME n SRCS a_test.cc DEPS x LABELS unit)
#
# DEPS are what a library's headers need, so they reach its dependents;
# PRIVATE_DEPS are used only by its .cc files (RocksDB, ICU and libcurl behind
# a header that does not include them) and do not reach dependents' compiles.
#
# TESTONLY marks fakes, fixtures and matchers (and binaries that exist only
# for tests and benchmarks). crm_check_testonly(), called
# once at the end of the top-level CMakeLists.txt, fails the configure step
# when a library that is not TESTONLY, or a binary, depends on one: test code
# never ships in a server.
#
# Every crm_cc_test joins a per-label build target (crm_tests_unit,
# crm_tests_service, crm_tests_e2e), so one tier can be built alone (the
# sanitizer run builds only the unit and service tiers).

# Compile options every target of ours gets.
function(_crm_own_target target)
  target_compile_options(${target} PRIVATE ${CRM_WARNINGS})
  target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR})
  if(CRM_CLANG_TIDY_COMMAND)
    set_target_properties(${target} PROPERTIES CXX_CLANG_TIDY "${CRM_CLANG_TIDY_COMMAND}")
  endif()
endfunction()

function(crm_cc_library)
  cmake_parse_arguments(CRM "TESTONLY" "NAME" "SRCS;HDRS;DEPS;PRIVATE_DEPS" ${ARGN})
  if(CRM_SRCS)
    add_library(${CRM_NAME} STATIC ${CRM_SRCS} ${CRM_HDRS})
    _crm_own_target(${CRM_NAME})
    target_include_directories(${CRM_NAME} PUBLIC ${PROJECT_SOURCE_DIR})
    target_link_libraries(${CRM_NAME} PUBLIC ${CRM_DEPS} PRIVATE ${CRM_PRIVATE_DEPS})
  else()
    if(CRM_PRIVATE_DEPS)
      message(FATAL_ERROR "${CRM_NAME}: a header-only library has no private deps")
    endif()
    add_library(${CRM_NAME} INTERFACE)
    target_include_directories(${CRM_NAME} INTERFACE ${PROJECT_SOURCE_DIR})
    target_link_libraries(${CRM_NAME} INTERFACE ${CRM_DEPS})
  endif()
  if(CRM_TESTONLY)
    set_property(GLOBAL APPEND PROPERTY CRM_TESTONLY_TARGETS ${CRM_NAME})
  else()
    _crm_record_deps(${CRM_NAME} ${CRM_DEPS} ${CRM_PRIVATE_DEPS})
  endif()
endfunction()

function(crm_cc_binary)
  cmake_parse_arguments(CRM "TESTONLY" "NAME" "SRCS;DEPS" ${ARGN})
  add_executable(${CRM_NAME} ${CRM_SRCS})
  _crm_own_target(${CRM_NAME})
  target_link_libraries(${CRM_NAME} PRIVATE ${CRM_DEPS})
  if(NOT CRM_TESTONLY)
    _crm_record_deps(${CRM_NAME} ${CRM_DEPS})
  endif()
endfunction()

function(crm_cc_test)
  cmake_parse_arguments(CRM "" "NAME" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${CRM_NAME} ${CRM_SRCS})
  _crm_own_target(${CRM_NAME})
  target_link_libraries(${CRM_NAME} PRIVATE ${CRM_DEPS} GTest::gmock GTest::gtest_main)
  if(NOT CRM_LABELS)
    set(CRM_LABELS unit)
  endif()
  foreach(label ${CRM_LABELS})
    if(NOT TARGET crm_tests_${label})
      add_custom_target(crm_tests_${label})
    endif()
    add_dependencies(crm_tests_${label} ${CRM_NAME})
  endforeach()
  gtest_discover_tests(${CRM_NAME}
    PROPERTIES LABELS "${CRM_LABELS}" TIMEOUT 300
    DISCOVERY_TIMEOUT 60)
endfunction()

# Remembers which targets `target` depends on, for crm_check_testonly().
function(_crm_record_deps target)
  set_property(GLOBAL APPEND PROPERTY CRM_SHIPPED_TARGETS ${target})
  set_property(GLOBAL PROPERTY CRM_DEPS_OF_${target} ${ARGN})
endfunction()

function(crm_check_testonly)
  get_property(testonly GLOBAL PROPERTY CRM_TESTONLY_TARGETS)
  get_property(shipped GLOBAL PROPERTY CRM_SHIPPED_TARGETS)
  set(errors "")
  foreach(target ${shipped})
    get_property(deps GLOBAL PROPERTY CRM_DEPS_OF_${target})
    foreach(dep ${deps})
      if(dep IN_LIST testonly)
        string(APPEND errors "\n  ${target} depends on the TESTONLY library ${dep}")
      endif()
    endforeach()
  endforeach()
  if(errors)
    message(FATAL_ERROR "Shipped code must not depend on test-only code:${errors}\n"
            "Mark the dependent TESTONLY, or move what it needs out of the test library.")
  endif()
endfunction()
