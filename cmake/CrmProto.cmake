# crm_proto_library(NAME n ROOT dir PROTOS a.proto b.proto [DEPS lib] [GRPC])
#
# Runs protoc (and grpc_cpp_plugin with mocks when GRPC is given) on PROTOS,
# paths relative to ROOT, into the build tree; includes of generated headers
# read "crm/pipelines/v1/pipeline.pb.h". Generated code is never committed.
find_program(CRM_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)

function(crm_proto_library)
  cmake_parse_arguments(CRM "GRPC" "NAME;ROOT" "PROTOS;DEPS;IMPORT_DIRS" ${ARGN})
  if(NOT CRM_ROOT)
    set(CRM_ROOT ${CMAKE_CURRENT_SOURCE_DIR})
  endif()
  set(out_dir ${PROJECT_BINARY_DIR}/gen)
  file(MAKE_DIRECTORY ${out_dir})
  set(srcs)
  set(hdrs)
  set(import_flags -I${CRM_ROOT} -I${PROJECT_SOURCE_DIR}/proto -I${PROJECT_SOURCE_DIR})
  foreach(dir ${CRM_IMPORT_DIRS})
    list(APPEND import_flags -I${dir})
  endforeach()
  foreach(proto ${CRM_PROTOS})
    string(REGEX REPLACE "\\.proto$" "" base ${proto})
    set(outputs ${out_dir}/${base}.pb.cc ${out_dir}/${base}.pb.h)
    set(plugin_args)
    if(CRM_GRPC)
      list(APPEND outputs ${out_dir}/${base}.grpc.pb.cc ${out_dir}/${base}.grpc.pb.h
           ${out_dir}/${base}_mock.grpc.pb.h)
      set(plugin_args --grpc_out=generate_mock_code=true:${out_dir}
          --plugin=protoc-gen-grpc=${CRM_GRPC_CPP_PLUGIN})
    endif()
    add_custom_command(
      OUTPUT ${outputs}
      COMMAND protobuf::protoc ${import_flags} --cpp_out=${out_dir} ${plugin_args}
              ${CRM_ROOT}/${proto}
      DEPENDS ${CRM_ROOT}/${proto} protobuf::protoc
      COMMENT "protoc ${proto}"
      VERBATIM)
    list(APPEND srcs ${out_dir}/${base}.pb.cc)
    if(CRM_GRPC)
      list(APPEND srcs ${out_dir}/${base}.grpc.pb.cc)
    endif()
  endforeach()
  add_library(${CRM_NAME} STATIC ${srcs})
  # `crm_generated` runs protoc for every proto without compiling anything
  # (what clang-tidy needs of a build tree).
  add_custom_target(${CRM_NAME}_generated DEPENDS ${srcs} ${hdrs})
  if(NOT TARGET crm_generated)
    add_custom_target(crm_generated)
  endif()
  add_dependencies(crm_generated ${CRM_NAME}_generated)
  target_include_directories(${CRM_NAME} SYSTEM PUBLIC ${out_dir})
  target_link_libraries(${CRM_NAME} PUBLIC protobuf::libprotobuf gRPC::grpc++ ${CRM_DEPS})
endfunction()
