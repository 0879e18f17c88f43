# Installs the libraries, public headers and an exported CMake package, so that another project
# can find_package(acme) and link acme::core (and, as they arrive, acme::client, acme::worker).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(ACME_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/acme)

install(TARGETS acme_core acme_net acme_broker acme_worker acme_plugin acme_client EXPORT acmeTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  FILE_SET HEADERS DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS acme-broker acme-worker acme-map acme-launch RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# The build-tree export below keeps $<BUILD_INTERFACE:acme_warnings> link items, so CMake wants
# acme_warnings in the export set too. It reaches consumers only as $<LINK_ONLY:...> of a target
# with no link items, so it adds nothing to their builds.
install(TARGETS acme_warnings EXPORT acmeTargets)

install(EXPORT acmeTargets NAMESPACE acme:: DESTINATION ${ACME_CMAKE_DIR})
configure_package_config_file(cmake/acmeConfig.cmake.in
  ${PROJECT_BINARY_DIR}/acmeConfig.cmake INSTALL_DESTINATION ${ACME_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/acmeConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/acmeConfig.cmake ${PROJECT_BINARY_DIR}/acmeConfigVersion.cmake
  DESTINATION ${ACME_CMAKE_DIR})

# The build tree is a package too (fmt does this), for consumers that do not install.
export(EXPORT acmeTargets NAMESPACE acme:: FILE ${PROJECT_BINARY_DIR}/acmeTargets.cmake)
