# Installation and the Debian package (`cpack -G DEB` in the build folder makes
# certgate_VERSION_ARCH.deb). Included from CMakeLists.txt.
include(GNUInstallDirs)

install(TARGETS certgate RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(CODE "set(CG_SRC_DIR \"${CMAKE_SOURCE_DIR}\")\nset(CG_GEN_DIR \"${CMAKE_BINARY_DIR}/packaging\")")
install(SCRIPT ${CMAKE_SOURCE_DIR}/cmake/install-files.cmake)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME certgate)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR certgate)
set(CPACK_PACKAGE_CONTACT "certgate maintainers <root@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "mTLS gateway and small CA for MCP servers, keys in a PKCS#11 token")
set(CPACK_PACKAGE_DESCRIPTION "certgate terminates mutual TLS in front of MCP (Model Context\n Protocol) servers, maps client certificates to agents with roles and scopes,\n enforces them on JSON-RPC calls, rate-limits, audits, and revokes within\n seconds. Its server and CA keys stay in a PKCS#11 token (SoftHSM2 or an HSM).")
# The package always installs under /usr (and /etc, /var/lib/certgate), whatever
# CMAKE_INSTALL_PREFIX the build folder was configured with; DESTDIR staging makes
# install-files.cmake see the real prefix.
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# pki-init and the agent scripts: softhsm2-util and openssl; adduser or
# systemd-sysusers for the postinst.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "softhsm2, openssl, adduser | systemd")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "opensc, logrotate")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "prometheus")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  "${CMAKE_SOURCE_DIR}/packaging/debian/postinst;${CMAKE_SOURCE_DIR}/packaging/debian/prerm;${CMAKE_SOURCE_DIR}/packaging/debian/postrm;${CMAKE_SOURCE_DIR}/packaging/debian/conffiles")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
