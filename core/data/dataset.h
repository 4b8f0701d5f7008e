#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace graft::core {

enum class DatasetLayout { kFlat = 1, kTrainVal = 2 };
enum class Split { kTrain = 0, kVal = 1 };

struct RejectedFile {
  std::string path;
  std::string reason;
};

struct ClassCount {
  std::string name;
  int train = 0;
  int val = 0;
};

struct DatasetInfo {
  std::string id;
  std::string name;
  DatasetLayout layout = DatasetLayout::kFlat;
  std::vector<ClassCount> classes;  // sorted by name; index = label
  int train_images = 0;
  int val_images = 0;
  int64_t bytes = 0;
  double split_fraction = 0;  // FLAT only
  uint64_t split_seed = 0;
  double created_at = 0;
  int rejected_count = 0;
  std::string owner;  // the principal that uploaded it
};

struct DatasetImage {
  Split split = Split::kTrain;
  int label = 0;
  std::string path;       // relative path inside the upload
  std::string blob_path;  // file on disk
};

}  // namespace graft::core
