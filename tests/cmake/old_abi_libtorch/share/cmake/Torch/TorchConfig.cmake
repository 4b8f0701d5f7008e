# A stand-in for a LibTorch built with libstdc++'s old ABI (pip wheels of torch
# before 2.7, pytorch.org's "Pre-cxx11 ABI" archives): what their TorchConfig
# reports, and nothing to link. graft's CMakeLists.txt must refuse it.
set(TORCH_FOUND TRUE)
set(Torch_VERSION 2.5.1)
set(TORCH_CXX_FLAGS "-D_GLIBCXX_USE_CXX11_ABI=0")
set(TORCH_INCLUDE_DIRS "")
set(TORCH_LIBRARIES "")
