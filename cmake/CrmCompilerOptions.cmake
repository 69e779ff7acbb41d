# Warnings for our own targets only; generated protos are compiled without
# them (see CrmProto.cmake) and their include dirs are SYSTEM.
set(CRM_WARNINGS
    -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
    -Werror=unused-result -Werror=return-type)

option(CRM_SANITIZE "Build with AddressSanitizer and UBSan" OFF)
if(CRM_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
