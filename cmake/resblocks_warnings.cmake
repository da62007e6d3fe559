# Warnings are errors in resblocks' own targets (tests, benchmarks, examples), never in users'.
function(resblocks_strict_warnings target)
  if(MSVC)
    target_compile_options(${target} PRIVATE /W4 /WX)
  else()
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Werror)
  endif()
endfunction()
