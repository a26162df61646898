# CUDA backend: builds ptc_runtime_cuda (runtime/cuda + codegen/cuda).
#
# Included from the top-level CMakeLists.txt after the ptc_plan target:
#   include(cmake/cuda.cmake)
# With nvcc (CMAKE_CUDA_COMPILER, default /usr/local/cuda/bin/nvcc): the real runtime, kernels
# compiled for CMAKE_CUDA_ARCHITECTURES (default 90 = sm_90 code + compute_90 PTX), linked with
# cudart and cuBLASLt, and PTC_HAVE_CUDA=1. Without nvcc (or -DPTC_CUDA=OFF): the same library
# built from runtime/cuda/cuda_stub.cc, whose entry points return "this ptc was built without
# CUDA" errors, and PTC_HAVE_CUDA=0. Either way no GPU is needed to build.
#
# Compile time matters (CI: 2 cores): few .cu files, no CUTLASS/CCCL, only the sm_90 target by
# default. Add architectures with -DCMAKE_CUDA_ARCHITECTURES="80;90".
if(TARGET ptc_runtime_cuda)
  return()
endif()

option(PTC_CUDA "Build the CUDA runtime when nvcc is found" ON)
set(PTC_CUDA_DIR ${CMAKE_SOURCE_DIR})

set(PTC_CUDA_FOUND OFF)
if(PTC_CUDA)
  if(NOT DEFINED CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX}
     AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc CACHE FILEPATH "CUDA compiler")
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 90 CACHE STRING "CUDA architectures (sm_90: H100/H200)")
    endif()
    if(CCACHE_PROGRAM)
      set(CMAKE_CUDA_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit)
    if(CUDAToolkit_FOUND AND TARGET CUDA::cublasLt)
      set(PTC_CUDA_FOUND ON)
    else()
      message(WARNING "ptc: nvcc found but the CUDA toolkit libraries (cudart, cublasLt) were "
                      "not: building the CUDA runtime stub")
    endif()
  endif()
endif()

# codegen/cuda/*.cc: the fused_elementwise code generator and its NVRTC driver (host C++;
# NVRTC is dlopen'ed at first use, never linked, so ptc starts on machines without CUDA).
# Built in every configuration: `ptc compile --target cuda` (ptc_driver) generates and
# compiles, the CUDA runtime regenerates a node's source at load to match the plan's kernels.
file(GLOB PTC_CUDA_CODEGEN_SRCS CONFIGURE_DEPENDS ${PTC_CUDA_DIR}/codegen/cuda/*.cc)
list(FILTER PTC_CUDA_CODEGEN_SRCS EXCLUDE REGEX "_test\\.cc$")
add_library(ptc_cuda_codegen STATIC ${PTC_CUDA_CODEGEN_SRCS})
target_link_libraries(ptc_cuda_codegen PUBLIC ptc_ir ptc_plan ${CMAKE_DL_LIBS})
# host_kernel.cc: generated kernels compiled for the host (tests, the CUDA emulation).
target_compile_definitions(ptc_cuda_codegen PRIVATE PTC_HOST_CXX="${CMAKE_CXX_COMPILER}")
if(PTC_CUDA_FOUND AND CUDA_nvrtc_LIBRARY)
  # The toolkit's NVRTC first; the loader's search path (libnvrtc.so.13 ...) after it.
  target_compile_definitions(ptc_cuda_codegen PRIVATE PTC_NVRTC_LIBRARY="${CUDA_nvrtc_LIBRARY}")
endif()

if(PTC_CUDA_FOUND)
  file(GLOB PTC_CUDA_RT_SRCS CONFIGURE_DEPENDS ${PTC_CUDA_DIR}/runtime/cuda/*.cc)
  list(FILTER PTC_CUDA_RT_SRCS EXCLUDE REGEX "(_test|_stub)\\.cc$")
  file(GLOB PTC_CUDA_KERNEL_SRCS CONFIGURE_DEPENDS ${PTC_CUDA_DIR}/codegen/cuda/*.cu)
  add_library(ptc_runtime_cuda STATIC ${PTC_CUDA_RT_SRCS} ${PTC_CUDA_KERNEL_SRCS})
  # The top level's add_compile_options (-mavx2 -Wall ...) are for the host compiler: keep them
  # off nvcc's command line.
  get_property(ptc_dir_opts DIRECTORY ${CMAKE_SOURCE_DIR} PROPERTY COMPILE_OPTIONS)
  set(ptc_cxx_opts "")
  foreach(opt ${ptc_dir_opts})
    list(APPEND ptc_cxx_opts "$<$<COMPILE_LANGUAGE:CXX>:${opt}>")
  endforeach()
  set_property(TARGET ptc_runtime_cuda PROPERTY COMPILE_OPTIONS ${ptc_cxx_opts})
  target_compile_options(ptc_runtime_cuda PRIVATE
                         $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -lineinfo>)
  # Shared cudart (CUDA::cudart): one runtime instance for the library and its users.
  set_target_properties(ptc_runtime_cuda PROPERTIES CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON
                        CUDA_SEPARABLE_COMPILATION OFF CUDA_RUNTIME_LIBRARY Shared)
  target_link_libraries(ptc_runtime_cuda PUBLIC ptc_ir ptc_plan ptc_cpu_kernels ptc_cuda_codegen
                        CUDA::cudart CUDA::cublasLt)
  target_compile_definitions(ptc_runtime_cuda PUBLIC PTC_HAVE_CUDA=1)
  # Optional cuDNN fused attention (runtime/cuda/cudnn_attention.cc, the only file that sees
  # the cuDNN frontend): needs the vendored frontend headers (third_party/cudnn_frontend,
  # header-only) and cudnn.h. libcudnn is NOT linked: the frontend's shim dlopens
  # libcudnn.so.9 at the first use, so a machine without cuDNN runs the flash kernels.
  set(PTC_CUDNN_FRONTEND_DIR ${PTC_CUDA_DIR}/third_party/cudnn_frontend/include)
  find_path(PTC_CUDNN_INCLUDE_DIR cudnn.h
            HINTS ${CUDAToolkit_INCLUDE_DIRS} ${CUDAToolkit_LIBRARY_ROOT}/include
            PATHS /usr/local/cuda/include /usr/local/include /usr/include
                  /usr/include/x86_64-linux-gnu)
  set(ptc_cudnn_default OFF)
  if(PTC_CUDNN_INCLUDE_DIR AND EXISTS ${PTC_CUDNN_FRONTEND_DIR}/cudnn_frontend.h)
    set(ptc_cudnn_default ON)
  endif()
  option(PTC_CUDNN "cuDNN fused attention (KernelOptions::attention_cudnn) when cudnn.h and \
the vendored frontend are found" ${ptc_cudnn_default})
  set(ptc_cudnn_src ${PTC_CUDA_DIR}/runtime/cuda/cudnn_attention.cc)
  if(PTC_CUDNN AND ptc_cudnn_default)
    # -isystem: no -Wall noise from the frontend; -idirafter: cudnn.h's folder after the
    # toolkit's own (the CUDA headers must come from the toolkit ptc compiles against).
    set_property(SOURCE ${ptc_cudnn_src} APPEND PROPERTY COMPILE_OPTIONS
                 -isystem ${PTC_CUDNN_FRONTEND_DIR} -idirafter ${PTC_CUDNN_INCLUDE_DIR})
    set_property(SOURCE ${ptc_cudnn_src} APPEND PROPERTY COMPILE_DEFINITIONS PTC_HAVE_CUDNN=1)
    message(STATUS "ptc: cuDNN fused attention (frontend ${PTC_CUDNN_FRONTEND_DIR}, "
                   "cudnn.h in ${PTC_CUDNN_INCLUDE_DIR}; libcudnn.so.9 loaded at run time)")
  else()
    set_property(SOURCE ${ptc_cudnn_src} APPEND PROPERTY COMPILE_DEFINITIONS PTC_HAVE_CUDNN=0)
    message(STATUS "ptc: no cuDNN fused attention (cudnn.h or third_party/cudnn_frontend "
                   "missing, or -DPTC_CUDNN=OFF)")
  endif()
  message(STATUS "ptc: CUDA runtime with ${CMAKE_CUDA_COMPILER} "
                 "(${CMAKE_CUDA_COMPILER_VERSION}), architectures ${CMAKE_CUDA_ARCHITECTURES}")
else()
  add_library(ptc_runtime_cuda STATIC ${PTC_CUDA_DIR}/runtime/cuda/cuda_stub.cc
                                      ${PTC_CUDA_DIR}/runtime/cuda/report.cc)
  target_link_libraries(ptc_runtime_cuda PUBLIC ptc_ir ptc_plan)
  target_compile_definitions(ptc_runtime_cuda PUBLIC PTC_HAVE_CUDA=0)
  message(STATUS "ptc: no CUDA compiler: ptc_runtime_cuda is the stub (no GPU support)")
endif()
