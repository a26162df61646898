# The CUDA CPU emulation (runtime/cuda/emu/README.md): the CUDA backend's own sources, the
# kernels of codegen/cuda included, built as host C++ against an emulated cudart and cuBLASLt,
# so that the CUDA tests run on machines without a GPU (ptc_cuda_emu_tests) and CUDA plans run
# on the CPU (ptc-cuda-emu). Needs the CUDA headers (not a GPU, not nvcc) and python3.
#
# The kernels run one fiber per CUDA thread; with PTC_CUDA_EMU_ASAN (default ON) the emulated
# backend is built with AddressSanitizer, so an out-of-bounds access of any kernel is an error
# (a CPU memcheck).
option(PTC_CUDA_EMU "Build the CUDA CPU emulation and its tests (needs the CUDA headers)" ON)
option(PTC_CUDA_EMU_ASAN "Build the CUDA CPU emulation with AddressSanitizer" ON)
option(PTC_CUDA_EMU_RACECHECK
       "Also build the CUDA CPU emulation's shared-memory race checker (ptc_cuda_racecheck_tests)"
       ON)
# The instrumentation of the racecheck variant's kernels (and of the race tests' own kernels).
# The instrumented accesses keep the widths of the source, as nvcc emits them (the sector and
# bank counts depend on them): no auto-vectorization (wider), no scalar replacement of
# aggregates (a uint4 load split into four 4-byte ones).
set(PTC_EMU_RACE_FLAGS -fsanitize=thread --param=tsan-instrument-func-entry-exit=0 -g
    -fno-tree-vectorize -fno-tree-sra)
if(NOT PTC_CUDA_EMU OR NOT PTC_CUDA_FOUND)
  return()
endif()
find_package(Python3 COMPONENTS Interpreter)
if(NOT Python3_FOUND)
  message(STATUS "ptc: no python3: no CUDA CPU emulation")
  return()
endif()

set(ptc_emu_dir ${CMAKE_BINARY_DIR}/cuda_emu)
file(MAKE_DIRECTORY ${ptc_emu_dir})
set(ptc_emu_kernels "")
foreach(cu ${PTC_CUDA_KERNEL_SRCS})
  get_filename_component(stem ${cu} NAME_WE)
  set(out ${ptc_emu_dir}/${stem}.cc)
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${Python3_EXECUTABLE} ${PTC_CUDA_DIR}/runtime/cuda/emu/rewrite_cu.py ${cu} ${out}
    DEPENDS ${cu} ${PTC_CUDA_DIR}/runtime/cuda/emu/rewrite_cu.py
    COMMENT "CUDA emulation: rewriting ${stem}.cu")
  list(APPEND ptc_emu_kernels ${out})
endforeach()
set_source_files_properties(${ptc_emu_kernels} PROPERTIES
  COMPILE_OPTIONS "-include;${PTC_CUDA_DIR}/runtime/cuda/emu/device_shim.h;-Wno-unused-parameter;-Wno-unused-variable;-Wno-unused-function;-Wno-unknown-pragmas;-Wno-class-memaccess")

# cudnn_attention.cc without the cuDNN frontend (its Create functions decline): a wrapper, since
# the source's own properties (PTC_HAVE_CUDNN=1, the frontend's include path) are per file.
set(ptc_emu_rt_srcs ${PTC_CUDA_RT_SRCS})
list(FILTER ptc_emu_rt_srcs EXCLUDE REGEX "cudnn_attention\\.cc$")
file(WRITE ${ptc_emu_dir}/cudnn_attention_off.cc.in
     "#define PTC_HAVE_CUDNN 0\n#include \"${PTC_CUDA_DIR}/runtime/cuda/cudnn_attention.cc\"\n")
configure_file(${ptc_emu_dir}/cudnn_attention_off.cc.in ${ptc_emu_dir}/cudnn_attention_off.cc
               COPYONLY)

# One emulated backend per checker: `name` built from the runtime's sources, the kernels given.
function(ptc_cuda_emu_runtime name)
  add_library(${name} STATIC ${ptc_emu_rt_srcs} ${ptc_emu_dir}/cudnn_attention_off.cc ${ARGN}
              ${PTC_CUDA_DIR}/runtime/cuda/emu/emu.cc
              ${PTC_CUDA_DIR}/runtime/cuda/emu/cublaslt_emu.cc)
  target_include_directories(${name} PUBLIC ${CUDAToolkit_INCLUDE_DIRS})
  target_link_libraries(${name} PUBLIC ptc_ir ptc_plan ptc_cpu_kernels ptc_cuda_codegen
                        Threads::Threads ${CMAKE_DL_LIBS})
  target_compile_definitions(${name} PUBLIC PTC_HAVE_CUDA=1 PTC_CUDA_EMU=1)
endfunction()

# The memcheck variant: AddressSanitizer on the whole backend.
ptc_cuda_emu_runtime(ptc_runtime_cuda_emu ${ptc_emu_kernels})
if(PTC_CUDA_EMU_ASAN)
  target_compile_options(ptc_runtime_cuda_emu PRIVATE -fsanitize=address -fno-omit-frame-pointer)
  target_link_options(ptc_runtime_cuda_emu PUBLIC -fsanitize=address)
endif()

# The racecheck variant (runtime/cuda/emu/racecheck.cc): the kernels compiled with GCC's
# ThreadSanitizer instrumentation only (its calls go to racecheck.cc's shared-memory race
# checker, not to the TSan runtime), debug information for the reports; no AddressSanitizer
# (the two do not combine). Each kernel file is compiled through a wrapper, since a source's options are
# per file.
if(PTC_CUDA_EMU_RACECHECK)
  set(ptc_emu_race_kernels "")
  foreach(cc ${ptc_emu_kernels})
    get_filename_component(stem ${cc} NAME_WE)
    set(w ${ptc_emu_dir}/race/${stem}.cc)
    file(WRITE ${w}.in "#include \"${cc}\"\n")
    configure_file(${w}.in ${w} COPYONLY)
    set_source_files_properties(${w} PROPERTIES OBJECT_DEPENDS ${cc})
    list(APPEND ptc_emu_race_kernels ${w})
  endforeach()
  set_source_files_properties(${ptc_emu_race_kernels} PROPERTIES COMPILE_OPTIONS
    "-include;${PTC_CUDA_DIR}/runtime/cuda/emu/device_shim.h;-Wno-unused-parameter;-Wno-unused-variable;-Wno-unused-function;-Wno-unknown-pragmas;-Wno-class-memaccess;${PTC_EMU_RACE_FLAGS}")
  ptc_cuda_emu_runtime(ptc_runtime_cuda_emu_race ${ptc_emu_race_kernels}
                       ${PTC_CUDA_DIR}/runtime/cuda/emu/racecheck.cc)
  target_compile_definitions(ptc_runtime_cuda_emu_race PRIVATE PTC_CUDA_EMU_RACECHECK=1)
endif()

add_executable(ptc-cuda-emu ${CMAKE_SOURCE_DIR}/tools/ptc_cuda/main.cc)
target_link_libraries(ptc-cuda-emu PRIVATE ptc_driver ptc_runtime_cuda_emu)
if(TARGET ptc_runtime_cuda_emu_race)
  add_executable(ptc-cuda-race ${CMAKE_SOURCE_DIR}/tools/ptc_cuda/main.cc)
  target_link_libraries(ptc-cuda-race PRIVATE ptc_driver ptc_runtime_cuda_emu_race)
endif()
message(STATUS "ptc: CUDA CPU emulation (ptc_runtime_cuda_emu, ptc-cuda-emu; "
               "AddressSanitizer ${PTC_CUDA_EMU_ASAN}, race checker ${PTC_CUDA_EMU_RACECHECK})")
