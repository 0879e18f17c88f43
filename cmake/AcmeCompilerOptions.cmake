# Warnings and sanitizers. acme_warnings is linked as $<BUILD_INTERFACE:...> so it never leaks
# into the exported package (STYLE.md, pitfall 1).
add_library(acme_warnings INTERFACE)
target_compile_options(acme_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Wold-style-cast
  -Wnon-virtual-dtor -Woverloaded-virtual -Wimplicit-fallthrough
  $<$<BOOL:${ACME_WERROR}>:-Werror>)

if(ACME_SANITIZE)
  # Applies to everything built here, tests included; the package test runs in the plain build.
  add_compile_options(-fsanitize=${ACME_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${ACME_SANITIZE})
  # g++ 12 with sanitizers at -O2 reports -Wmaybe-uninitialized false positives (in std::variant
  # moves); its manual warns that sanitizers cause them. Builds without sanitizers keep it.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(acme_warnings INTERFACE -Wno-maybe-uninitialized)
  endif()
endif()

if(ACME_FUZZ)
  # libFuzzer builds (the fuzz preset, clang): coverage for libFuzzer and ASan+UBSan in every
  # library, so that the fuzzers are guided by, and check, the code they drive (tests/fuzz/).
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=all)
  add_link_options(-fsanitize=address,undefined)
endif()
