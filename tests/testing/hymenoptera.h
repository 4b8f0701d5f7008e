#pragma once

// Ants and bees from ../shared as a trainer's input: the first N JPEGs (by
// name) per class and split. The set's one GIF is left out, as the upload
// path rejects it.

#include <algorithm>
#include <filesystem>
#include <string>
#include <tuple>
#include <vector>

#include "core/data/dataset.h"
#include "tests/testing/paths.h"

namespace graft::testing {

// The ants-and-bees dataset's folder (train/ and val/, one folder per class).
inline std::string HymenopteraDir() { return SharedDir() + "/data/hymenoptera"; }

inline std::vector<core::DatasetImage> HymenopteraImages(int train_per_class, int val_per_class) {
  namespace fs = std::filesystem;
  std::vector<core::DatasetImage> out;
  const fs::path root = HymenopteraDir();
  const std::vector<std::string> classes{"ants", "bees"};
  for (const auto& [split, dir, limit] : {std::tuple{core::Split::kTrain, "train", train_per_class},
                                          std::tuple{core::Split::kVal, "val", val_per_class}}) {
    for (size_t c = 0; c < classes.size(); ++c) {
      std::vector<fs::path> files;
      for (const auto& e : fs::directory_iterator(root / dir / classes[c])) {
        std::string ext = e.path().extension().string();
        std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
        if (ext == ".jpg" || ext == ".jpeg") files.push_back(e.path());
      }
      std::sort(files.begin(), files.end());
      for (size_t i = 0; i < files.size() && static_cast<int>(i) < limit; ++i) {
        out.push_back({split, static_cast<int>(c), files[i].filename().string(), files[i].string()});
      }
    }
  }
  return out;
}

}  // namespace graft::testing
