# Debian package of the applications (cpack -G DEB from the build folder).
set(CPACK_PACKAGE_NAME "lathe")
set(CPACK_PACKAGE_VENDOR "Lathe")
set(CPACK_PACKAGE_CONTACT "lathe@localhost")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # lathe_VERSION_ARCH.deb
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/lathe")
# Debian does not package the CUDA 12/13 libraries a GPU build links (cuBLAS, cuSOLVER from the toolkit), so
# dpkg-shlibdeps leaves them out of Depends and such a package would not start where they are missing: the package
# is the CPU build (packaging/make-deb.sh configures it with LATHE_WITH_CUDA=OFF); GPU users build from source.
if(TARGET lathe_gpu)
  message(STATUS "This build links the CUDA libraries: its package needs them where it is installed; "
                  "packaging/make-deb.sh builds the CPU package that installs on any Debian 12.")
endif()
set(CPACK_GENERATOR "DEB;TGZ")
include(CPack)
