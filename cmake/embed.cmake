# Writes OUT, a C file holding every file of DIR as a byte array, for
# src/agent/http/api.c: cmake -DDIR=... -DOUT=... -P embed.cmake
file(GLOB files RELATIVE "${DIR}" "${DIR}/*")
list(SORT files)
set(body "/* Generated from ${DIR} at build time. */\n#include <stddef.h>\n\n")
set(table "")
set(i 0)
foreach(f IN LISTS files)
  if(IS_DIRECTORY "${DIR}/${f}")
    continue()
  endif()
  file(READ "${DIR}/${f}" hex HEX)
  string(LENGTH "${hex}" n)
  math(EXPR size "${n} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){16})" "\\1\n" bytes "${bytes}")
  string(APPEND body "static const unsigned char f${i}[] = {\n${bytes}0};\n")
  string(APPEND table "    {\"${f}\", f${i}, ${size}},\n")
  math(EXPR i "${i} + 1")
endforeach()
string(APPEND body "\ntypedef struct otk_embedded_file {\n    const char *name;\n"
  "    const unsigned char *data;\n    size_t size;\n} otk_embedded_file;\n\n"
  "const otk_embedded_file otk_dashboard_files[] = {\n${table}    {NULL, NULL, 0}};\n"
  "const size_t otk_dashboard_n_files = ${i};\n")
file(WRITE "${OUT}.tmp" "${body}")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
