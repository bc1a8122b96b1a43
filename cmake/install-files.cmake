# Run at install time (cmake --install, cpack): installs everything but the binary,
# with paths chosen from the install-time prefix. A package (prefix /usr) gets /etc
# and /var/lib/certgate; any other prefix keeps everything under itself, so
# `cmake --install build --prefix ~/opt/certgate` never writes to /etc.
#
# Set by the caller (install(CODE) in CMakeLists.txt): CG_SRC_DIR, CG_GEN_DIR.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(CG_ETC "/etc")
  set(CG_STATE "/var/lib/certgate")
else()
  set(CG_ETC "${CMAKE_INSTALL_PREFIX}/etc")
  set(CG_STATE "${CMAKE_INSTALL_PREFIX}/var/lib/certgate")
endif()
set(CG_BINDIR "${CMAKE_INSTALL_PREFIX}/bin")
set(CG_SHARE "${CMAKE_INSTALL_PREFIX}/share/certgate")
set(CG_DOC "${CMAKE_INSTALL_PREFIX}/share/doc/certgate")
set(CG_LIB "${CMAKE_INSTALL_PREFIX}/lib")

function(cg_generate in out)
  file(READ "${CG_SRC_DIR}/${in}" text)
  string(CONFIGURE "${text}" text @ONLY)
  file(WRITE "${CG_GEN_DIR}/${out}" "${text}")
endfunction()

cg_generate(packaging/certgate.service.in certgate.service)
cg_generate(packaging/certgate.logrotate.in certgate)
cg_generate(packaging/certgate.sysusers.in sysusers/certgate.conf)
cg_generate(packaging/certgate.tmpfiles.in tmpfiles/certgate.conf)
cg_generate(packaging/installed.sh.in installed.sh)

# Helper scripts: the ones an operator runs (not the checkout's test, fuzz and
# quickstart drivers), with their shared library and the install-time paths.
file(GLOB cg_scripts "${CG_SRC_DIR}/scripts/pki-init" "${CG_SRC_DIR}/scripts/ca-import" "${CG_SRC_DIR}/scripts/agent-*"
  "${CG_SRC_DIR}/scripts/ca-*")
file(INSTALL DESTINATION "${CG_SHARE}/scripts" TYPE PROGRAM FILES ${cg_scripts})
file(INSTALL DESTINATION "${CG_SHARE}/scripts/lib" TYPE FILE
  FILES "${CG_SRC_DIR}/scripts/lib/common.sh" "${CG_GEN_DIR}/installed.sh")
file(GLOB cg_templates "${CG_SRC_DIR}/pki/*.template")
file(INSTALL DESTINATION "${CG_SHARE}/pki" TYPE FILE FILES ${cg_templates})
file(GLOB cg_monitoring "${CG_SRC_DIR}/monitoring/*.json" "${CG_SRC_DIR}/monitoring/*.yml")
if(cg_monitoring)
  file(INSTALL DESTINATION "${CG_SHARE}/monitoring" TYPE FILE FILES ${cg_monitoring})
endif()
file(INSTALL DESTINATION "${CG_DOC}" TYPE FILE FILES "${CG_SRC_DIR}/README.md")

file(INSTALL DESTINATION "${CG_LIB}/systemd/system" TYPE FILE
  FILES "${CG_GEN_DIR}/certgate.service")
file(INSTALL DESTINATION "${CG_LIB}/sysusers.d" TYPE FILE
  FILES "${CG_GEN_DIR}/sysusers/certgate.conf")
file(INSTALL DESTINATION "${CG_LIB}/tmpfiles.d" TYPE FILE
  FILES "${CG_GEN_DIR}/tmpfiles/certgate.conf")
file(INSTALL DESTINATION "${CG_ETC}/logrotate.d" TYPE FILE FILES "${CG_GEN_DIR}/certgate")
