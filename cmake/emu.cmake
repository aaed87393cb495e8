# The kernel emulator: every kernels/*.cu (and the emulator's self-test kernels) compiled as C++ against
# kernels/emu/cuda_emu.h, with the fiber runtime, into ${VWLMM_ARTIFACTS}/native/libvwlmm_emu.so. VwLmm.Cuda copies
# the library next to its assembly; EmulatedRuntime loads it from there. By hand:
#   cmake -S cmake -B artifacts/native && cmake --build artifacts/native && dotnet build tests/VwLmm.Tests -c Release
file(GLOB VWLMM_EMU_KERNEL_SOURCES CONFIGURE_DEPENDS "${VWLMM_KERNELS}/*.cu")
set(VWLMM_EMU_SOURCES ${VWLMM_EMU_KERNEL_SOURCES} "${VWLMM_KERNELS}/emu/selftest.cu")
set_source_files_properties(${VWLMM_EMU_SOURCES} PROPERTIES LANGUAGE CXX)

add_library(vwlmm_emu SHARED ${VWLMM_EMU_SOURCES} "${VWLMM_KERNELS}/emu/emu_runtime.cpp")
set_target_properties(vwlmm_emu PROPERTIES
    CXX_STANDARD 17
    CXX_STANDARD_REQUIRED ON
    CXX_EXTENSIONS OFF
    CXX_VISIBILITY_PRESET hidden
    POSITION_INDEPENDENT_CODE ON
    LIBRARY_OUTPUT_DIRECTORY "${VWLMM_ARTIFACTS}/native")
target_compile_definitions(vwlmm_emu PRIVATE VWLMM_EMU)
target_include_directories(vwlmm_emu PRIVATE "${VWLMM_KERNELS}")
# -Wno-unknown-pragmas: `#pragma unroll` is NVVM's; g++ runs such a loop as written.
target_compile_options(vwlmm_emu PRIVATE -O2 -Wall -Wextra -Wno-unknown-pragmas)
find_package(Threads REQUIRED)
target_link_libraries(vwlmm_emu PRIVATE Threads::Threads)
