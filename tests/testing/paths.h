#pragma once

#include <string>

#include "tests/testing/build_paths.h"

namespace graft::testing {

// ../shared beside the repository: real weights, images and datasets.
inline std::string SharedDir() { return GRAFT_SHARED_DIR; }
inline std::string WeightsDir() { return SharedDir() + "/weights"; }
inline std::string ImagesDir() { return SharedDir() + "/images"; }
inline std::string SourceDir() { return GRAFT_SOURCE_DIR; }
// Debian's Python, which has torch and torchvision.
inline std::string Python() { return GRAFT_PYTHON; }

}  // namespace graft::testing
