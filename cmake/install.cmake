# Install rules (included at the end of the top-level CMakeLists.txt).
#
#   bin/                      otakey (operator CLI), otakey-device (device program)
#   sbin/                     otakey-agent (daemon)
#   lib/otakey/               otakey_mosquitto.so, the broker plugin (OTK_INSTALL_PLUGINDIR)
#   LIBDIR/                   libotakey-device.a: the device core, the codec and key schedule,
#                             the mbedTLS crypto backend; pkgconfig/otakey-device.pc and
#                             cmake/otakey/ (find_package(otakey): target otakey::device)
#   include/otakey/           the device core's public headers
#   lib/systemd/system/       otakey-agent.service (OTK_INSTALL_UNITDIR)
#   share/man/, share/doc/otakey/   man pages, README and docs/, examples/agent.ini
#                             (OTK_INSTALL_EXAMPLESDIR)
#
# The plugin goes to lib/otakey and not to LIBDIR: it is a private module that
# mosquitto dlopens by the path in its configuration, not a library anything
# links against, and docs/operations.md's broker configurations name
# /usr/lib/otakey/otakey_mosquitto.so. (Debian's mosquitto puts its own plugin,
# mosquitto_dynamic_security.so, straight into /usr/lib/<triplet>/; a plugin of
# another package keeps to its own directory, and a package that is not
# Multi-Arch: same needs no triplet in it.) Debian's cmake helper sets LIBDIR to
# lib/<triplet>, which is where the static library belongs.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

option(OTK_INSTALL_SYSTEMD "Install the systemd unit of otakey-agent" ON)
set(OTK_INSTALL_PLUGINDIR "lib/otakey" CACHE STRING
    "Directory of otakey_mosquitto.so (relative to the prefix, or absolute)")
set(OTK_INSTALL_UNITDIR "lib/systemd/system" CACHE STRING
    "systemd system unit directory (relative to the prefix, or absolute: Debian 12 wants /lib/systemd/system)")
set(OTK_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/otakey" CACHE STRING
    "Directory of otakeyConfig.cmake")
set(OTK_INSTALL_EXAMPLESDIR "${CMAKE_INSTALL_DOCDIR}/examples" CACHE STRING
    "Directory of the example agent.ini (debian/rules: the otakey-agent package's)")

# --- programs and the broker plugin ---
install(TARGETS otakey otakey-device RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS otakey-agent RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
install(TARGETS otakey_mosquitto LIBRARY DESTINATION ${OTK_INSTALL_PLUGINDIR})

# --- the device core as an installable library: libotakey-device.a ---
# The same sources as otk_common + otk_device + the mbedTLS and PSA crypto
# ports, in one
# archive with position-independent code (a host integration may link it into
# a shared object). Static only: the core is made to be compiled into
# firmware, and its contexts (otk_device, otk_port) are caller-allocated
# structs whose layout is part of the ABI, which a shared library would have
# to keep stable.
add_library(otk_device_install STATIC
  src/common/util.c
  src/common/wire.c
  src/common/proto.c
  src/device/keystore.c
  src/device/device.c
  src/common/crypto_mbedtls.c
  src/common/crypto_psa.c)
set_target_properties(otk_device_install PROPERTIES
  OUTPUT_NAME otakey-device
  EXPORT_NAME device
  C_STANDARD 99
  POSITION_INDEPENDENT_CODE ON
  ARCHIVE_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/lib)
target_include_directories(otk_device_install
  PUBLIC $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
         $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>
  PRIVATE ${MBEDTLS_INCLUDE_DIR})
# otakey::mbedcrypto is defined by otakeyConfig.cmake (find_library).
target_link_libraries(otk_device_install
  PUBLIC $<BUILD_INTERFACE:${MBEDCRYPTO_LIB}> $<INSTALL_INTERFACE:otakey::mbedcrypto>)
add_library(otakey::device ALIAS otk_device_install)

# What the device core's users include: device.h and what it includes
# (common, keystore, port, crypto), wire.h (message sizes such as
# OTK_MSG_MAX_LEN, the codec) and proto.h (the key schedule). The agent's
# headers (agent.h, store.h, ...) describe libraries that are not installed.
set(OTK_DEVICE_HEADERS common crypto crypto_psa device keystore port proto wire)
list(TRANSFORM OTK_DEVICE_HEADERS PREPEND include/otakey/)
list(TRANSFORM OTK_DEVICE_HEADERS APPEND .h)
install(TARGETS otk_device_install EXPORT otakeyTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${OTK_DEVICE_HEADERS} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/otakey)

# pkg-config. mbedTLS 2.28 (Debian 12) ships no .pc file: -lmbedcrypto
# goes into Libs, since the archive's crypto backend needs it.
set(OTK_PC_LIBDIR ${CMAKE_INSTALL_FULL_LIBDIR})
set(OTK_PC_INCLUDEDIR ${CMAKE_INSTALL_FULL_INCLUDEDIR})
file(CONFIGURE OUTPUT ${CMAKE_BINARY_DIR}/otakey-device.pc @ONLY CONTENT [=[
prefix=@CMAKE_INSTALL_PREFIX@
libdir=@OTK_PC_LIBDIR@
includedir=@OTK_PC_INCLUDEDIR@

Name: otakey-device
Description: OTA-Key device core (sans-I/O, malloc-free C99 key management) with its mbedTLS crypto backend
Version: @PROJECT_VERSION@
Cflags: -I${includedir}
Libs: -L${libdir} -lotakey-device -lmbedcrypto
]=])
install(FILES ${CMAKE_BINARY_DIR}/otakey-device.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# CMake package: find_package(otakey [0.1] [COMPONENTS device]) -> otakey::device.
file(WRITE ${CMAKE_BINARY_DIR}/otakeyConfig.cmake.in [=[
@PACKAGE_INIT@

# otakey::device: libotakey-device.a, the OTA-Key device core and its mbedTLS
# crypto backend (include <otakey/device.h>).
if(NOT TARGET otakey::mbedcrypto)
  find_library(OTAKEY_MBEDCRYPTO_LIBRARY mbedcrypto)
  if(NOT OTAKEY_MBEDCRYPTO_LIBRARY)
    set(otakey_FOUND FALSE)
    set(otakey_NOT_FOUND_MESSAGE "otakey::device needs mbedTLS's libmbedcrypto (Debian: libmbedtls-dev)")
    return()
  endif()
  add_library(otakey::mbedcrypto UNKNOWN IMPORTED)
  set_target_properties(otakey::mbedcrypto PROPERTIES IMPORTED_LOCATION "${OTAKEY_MBEDCRYPTO_LIBRARY}")
endif()
include("${CMAKE_CURRENT_LIST_DIR}/otakeyTargets.cmake")
set(otakey_device_FOUND TRUE)
check_required_components(otakey)
]=])
configure_package_config_file(${CMAKE_BINARY_DIR}/otakeyConfig.cmake.in
  ${CMAKE_BINARY_DIR}/otakeyConfig.cmake INSTALL_DESTINATION ${OTK_INSTALL_CMAKEDIR})
# 0.x: a new minor version may change the API.
write_basic_package_version_file(${CMAKE_BINARY_DIR}/otakeyConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(EXPORT otakeyTargets NAMESPACE otakey:: DESTINATION ${OTK_INSTALL_CMAKEDIR})
install(FILES ${CMAKE_BINARY_DIR}/otakeyConfig.cmake ${CMAKE_BINARY_DIR}/otakeyConfigVersion.cmake
  DESTINATION ${OTK_INSTALL_CMAKEDIR})

# --- the systemd unit, its ExecStart pointed at the installed daemon ---
if(OTK_INSTALL_SYSTEMD)
  file(READ ${CMAKE_CURRENT_SOURCE_DIR}/packaging/otakey-agent.service OTK_UNIT)
  string(REPLACE "/usr/sbin/otakey-agent" "${CMAKE_INSTALL_FULL_SBINDIR}/otakey-agent" OTK_UNIT "${OTK_UNIT}")
  file(WRITE ${CMAKE_BINARY_DIR}/otakey-agent.service "${OTK_UNIT}")
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
    ${CMAKE_CURRENT_SOURCE_DIR}/packaging/otakey-agent.service)
  install(FILES ${CMAKE_BINARY_DIR}/otakey-agent.service DESTINATION ${OTK_INSTALL_UNITDIR})
endif()

# --- man pages, docs, the example configuration ---
foreach(page otakey.1 otakey-device.1 otakey-agent.conf.5 otakey-agent.8)
  string(REGEX REPLACE ".*\\.([0-9])$" "\\1" section ${page})
  install(FILES packaging/man/${page} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
endforeach()
file(GLOB OTK_DOCS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/docs/*.md
     ${CMAKE_CURRENT_SOURCE_DIR}/docs/*.json)
install(FILES README.md ${OTK_DOCS} DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES packaging/agent.ini DESTINATION ${OTK_INSTALL_EXAMPLESDIR})

# Everything the rules above install, for a build of those alone
# ('cmake --build B --target otk_installables'; debian/rules does so).
add_custom_target(otk_installables DEPENDS otakey otakey-device otakey-agent otakey_mosquitto
  otk_device_install)
