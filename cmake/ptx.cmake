# kernels/*.cu → ${VWLMM_ARTIFACTS}/ptx/<stem>.compute_80.ptx and .compute_90.ptx (embedded in VwLmm.Cuda), validated
# by CUBIN compiles for sm_80 and sm_90 whose ptxas figures go to ${VWLMM_ARTIFACTS}/ptx/resources.txt.
# kernels/tools/ptxgen.c drives the compiler: nvcc when one is found and works, else NVRTC (Debian libnvrtc11.2).
# A compile or ptxas error in any file fails the build. docs/KERNELS.md describes the pipeline.

# Script mode (invoked below as `cmake -P ptx.cmake`): merge the per-file reports into resources.txt and delete the
# outputs of .cu files that no longer exist, so VwLmm.Cuda never embeds a stale module.
if(CMAKE_SCRIPT_MODE_FILE)
  cmake_policy(VERSION 3.20)
  file(GLOB outputs "${PTX_DIR}/*.ptx" "${PTX_DIR}/*.resources.txt")
  foreach(output ${outputs})
    get_filename_component(name "${output}" NAME)
    string(REGEX REPLACE "\\..*$" "" stem "${name}")
    if(NOT "${PTX_DIR}/${stem}.resources.txt" IN_LIST PARTS)
      file(REMOVE "${output}")
    endif()
  endforeach()
  set(report "# compiler: ${COMPILER}\n# module kernel arch registers smem_bytes stack_bytes spill_store_bytes spill_load_bytes (ptxas -v)\n")
  foreach(part ${PARTS})
    file(READ "${part}" text)
    string(APPEND report "${text}")
  endforeach()
  file(WRITE "${PTX_DIR}/resources.txt.tmp" "${report}")
  file(RENAME "${PTX_DIR}/resources.txt.tmp" "${PTX_DIR}/resources.txt")
  return()
endif()

# nvcc is used only if it compiles a trivial kernel: nvcc 11.8 on Debian 12 rejects the default g++ 12 until told
# "-ccbin clang-14" through VWLMM_NVCC_FLAGS. An unusable nvcc falls back to NVRTC, with a note saying why.
find_program(NVCC nvcc)
set(VWLMM_NVCC_FLAGS "" CACHE STRING "extra nvcc flags for kernels/*.cu, e.g. '-ccbin clang-14'")
set(use_nvcc OFF)
if(NVCC)
  separate_arguments(nvcc_flags UNIX_COMMAND "${VWLMM_NVCC_FLAGS}")
  file(WRITE "${CMAKE_CURRENT_BINARY_DIR}/nvcc_probe.cu" "extern \"C\" __global__ void probe(float* x) { x[0] = 1.0f; }\n")
  execute_process(
    COMMAND "${NVCC}" -ptx -arch=compute_80 ${nvcc_flags} -o nvcc_probe.ptx nvcc_probe.cu
    WORKING_DIRECTORY "${CMAKE_CURRENT_BINARY_DIR}"
    RESULT_VARIABLE nvcc_rc OUTPUT_VARIABLE nvcc_log ERROR_VARIABLE nvcc_log)
  if(nvcc_rc EQUAL 0)
    set(use_nvcc ON)
  else()
    string(REGEX REPLACE "\n.*" "" nvcc_log "${nvcc_log}")
    if(nvcc_log STREQUAL "")
      set(nvcc_log "${nvcc_rc}")
    endif()
    message(NOTICE "kernels: ${NVCC} is unusable (${nvcc_log}); using NVRTC. Set -DVWLMM_NVCC_FLAGS=... to fix nvcc.")
  endif()
endif()
if(use_nvcc)
  set(ptx_compiler --nvcc "${NVCC}" --nvcc-flags "${VWLMM_NVCC_FLAGS}")
  set(compiler_name "nvcc ${NVCC} ${VWLMM_NVCC_FLAGS}")
else()
  find_library(VWLMM_NVRTC NAMES libnvrtc.so.13 libnvrtc.so.12 libnvrtc.so.11.2 nvrtc)
  if(NOT VWLMM_NVRTC)
    message(FATAL_ERROR "NVRTC not found (libnvrtc.so.13/.12/.11.2) and no nvcc: run ./build.sh deps")
  endif()
  set(ptx_compiler --nvrtc "${VWLMM_NVRTC}")
  set(compiler_name "NVRTC ${VWLMM_NVRTC}")
endif()

# Switching compiler or flags must recompile every file: the outputs depend on this stamp, rewritten only on change.
set(compiler_stamp "${CMAKE_CURRENT_BINARY_DIR}/ptx_compiler.txt")
file(CONFIGURE OUTPUT "${compiler_stamp}" CONTENT "${compiler_name}\n")

add_executable(ptxgen ${VWLMM_KERNELS}/tools/ptxgen.c)
set_target_properties(ptxgen PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON)
target_compile_options(ptxgen PRIVATE -Wall -Wextra)
target_link_libraries(ptxgen PRIVATE ${CMAKE_DL_LIBS})

set(ptx_dir "${VWLMM_ARTIFACTS}/ptx")
file(MAKE_DIRECTORY "${ptx_dir}")
file(GLOB kernel_sources CONFIGURE_DEPENDS "${VWLMM_KERNELS}/*.cu")
file(GLOB kernel_headers CONFIGURE_DEPENDS "${VWLMM_KERNELS}/*.cuh")

set(ptx_outputs)
set(report_parts)
foreach(cu ${kernel_sources})
  get_filename_component(stem "${cu}" NAME_WE)
  set(outs "${ptx_dir}/${stem}.compute_80.ptx" "${ptx_dir}/${stem}.compute_90.ptx" "${ptx_dir}/${stem}.resources.txt")
  add_custom_command(
    OUTPUT ${outs}
    COMMAND ptxgen ${ptx_compiler} -I "${VWLMM_KERNELS}" -o "${ptx_dir}" "${cu}"
    DEPENDS ptxgen "${cu}" ${kernel_headers} "${compiler_stamp}"
    COMMENT "PTX ${stem}.cu (compute_80, compute_90; ptxas sm_80, sm_90)"
    VERBATIM)
  list(APPEND ptx_outputs ${outs})
  list(APPEND report_parts "${ptx_dir}/${stem}.resources.txt")
endforeach()

add_custom_command(
  OUTPUT "${ptx_dir}/resources.txt"
  COMMAND ${CMAKE_COMMAND} "-DPTX_DIR=${ptx_dir}" "-DPARTS=${report_parts}" "-DCOMPILER=${compiler_name}" -P "${CMAKE_CURRENT_LIST_FILE}"
  DEPENDS ${report_parts} "${CMAKE_CURRENT_LIST_FILE}" "${compiler_stamp}"
  COMMENT "PTX resource report"
  VERBATIM)
add_custom_target(ptx ALL DEPENDS ${ptx_outputs} "${ptx_dir}/resources.txt")
