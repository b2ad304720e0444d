# Shared build settings for every gsau target.

add_library(gsau_build_flags INTERFACE)
target_compile_options(gsau_build_flags INTERFACE -Wall -Wextra)
if(GSAU_WERROR)
  target_compile_options(gsau_build_flags INTERFACE -Werror)
endif()

if(GSAU_SANITIZE STREQUAL "address")
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
elseif(GSAU_SANITIZE STREQUAL "thread")
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
elseif(NOT GSAU_SANITIZE STREQUAL "")
  message(FATAL_ERROR "GSAU_SANITIZE must be '', 'address' or 'thread', not '${GSAU_SANITIZE}'")
endif()
# GCC's manual warns that the sanitizers raise -Wmaybe-uninitialized's false positives: GCC 12
# with ASan flags libstdc++'s own std::regex (app_test.cc), so `make test-asan WERROR=ON` did not
# build. The normal build keeps the warning.
if(GSAU_SANITIZE AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  target_compile_options(gsau_build_flags INTERFACE -Wno-maybe-uninitialized)
endif()

# gsau_module(NAME <name> SOURCES ... [PUBLIC_DEPS ...] [PRIVATE_DEPS ...])
# Defines library gsau_<name> with alias gsau::<name>; public headers in <name>/include.
function(gsau_module)
  cmake_parse_arguments(M "" "NAME" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(gsau_${M_NAME} STATIC ${M_SOURCES})
  add_library(gsau::${M_NAME} ALIAS gsau_${M_NAME})
  target_include_directories(gsau_${M_NAME}
    PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include
    PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_link_libraries(gsau_${M_NAME} PUBLIC ${M_PUBLIC_DEPS} PRIVATE gsau_build_flags ${M_PRIVATE_DEPS})
endfunction()
