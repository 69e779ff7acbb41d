# Warnings for our own targets only; generated protos are compiled without
# them (see CrmProto.cmake) and their include dirs are SYSTEM.
set(CRM_WARNINGS
    -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
    -Werror=unused-result -Werror=return-type)
# clang checks the lock annotations (ABSL_GUARDED_BY,
# ABSL_EXCLUSIVE_LOCKS_REQUIRED, ...): a guarded member touched without its
# lock fails the build.
if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  list(APPEND CRM_WARNINGS -Wthread-safety -Werror=thread-safety)
endif()

# AddressSanitizer + UndefinedBehaviorSanitizer for every target (ours and
# the generated protos). Any UB report aborts the test that hit it; line
# tables are enough for symbolised stacks and keep the build small.
option(CRM_SANITIZE "Build with AddressSanitizer and UBSan" OFF)
if(CRM_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=all
                      -fno-omit-frame-pointer -g1)
  add_link_options(-fsanitize=address,undefined)
endif()

# clang-tidy on our own targets only (the checks are in .clang-tidy);
# generated protos and third-party headers are not ours to fix.
option(CRM_CLANG_TIDY "Run clang-tidy while compiling our targets" OFF)
if(CRM_CLANG_TIDY)
  find_program(CRM_CLANG_TIDY_EXE NAMES clang-tidy clang-tidy-14 REQUIRED)
  set(CRM_CLANG_TIDY_COMMAND ${CRM_CLANG_TIDY_EXE} --quiet)
endif()
