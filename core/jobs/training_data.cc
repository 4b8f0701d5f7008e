#include "core/jobs/training_data.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "core/data/split.h"
#include "core/util/status_macros.h"

namespace graft::core {

void Resplit(std::vector<DatasetImage>& images, double fraction, uint64_t seed) {
  std::vector<SplitItem> items;
  items.reserve(images.size());
  for (const auto& image : images) items.push_back({image.label, image.path});
  const std::vector<bool> val = StratifiedValidation(items, fraction, seed);
  for (size_t i = 0; i < images.size(); ++i) images[i].split = val[i] ? Split::kVal : Split::kTrain;
}

absl::StatusOr<JobData> LoadJobData(DatasetStore& datasets, const JobSpec& spec) {
  JobData data;
  ASSIGN_OR_RETURN(data.dataset, datasets.Get(spec.dataset));
  ASSIGN_OR_RETURN(data.images, datasets.Images(spec.dataset));
  if (spec.validation_fraction > 0) Resplit(data.images, spec.validation_fraction, spec.seed);
  if (spec.add_datasets.empty()) return data;

  // Counts as the split left them (a re-split moves images between train and val).
  for (ClassCount& c : data.dataset.classes) c.train = c.val = 0;
  for (const DatasetImage& image : data.images) {
    ClassCount& c = data.dataset.classes[image.label];
    ++(image.split == Split::kVal ? c.val : c.train);
  }
  std::map<std::string, int> label_of;
  for (size_t i = 0; i < data.dataset.classes.size(); ++i) label_of[data.dataset.classes[i].name] = static_cast<int>(i);
  for (const std::string& id : spec.add_datasets) {
    ASSIGN_OR_RETURN(const DatasetInfo added, datasets.Get(id));
    ASSIGN_OR_RETURN(std::vector<DatasetImage> images, datasets.Images(id));
    // Its classes the dataset lacks come after the dataset's own, in name order.
    std::vector<int> label(added.classes.size());
    for (size_t i = 0; i < added.classes.size(); ++i) {
      const auto [it, fresh] = label_of.emplace(added.classes[i].name, static_cast<int>(data.dataset.classes.size()));
      if (fresh) data.dataset.classes.push_back({added.classes[i].name, 0, 0});
      label[i] = it->second;
    }
    for (DatasetImage& image : images) {
      if (image.label < 0 || image.label >= static_cast<int>(label.size())) {
        return absl::DataLossError(absl::StrCat("dataset '", added.name, "' has an image with label ", image.label,
                                                " of ", label.size(), " classes"));
      }
      image.label = label[image.label];
      image.split = Split::kTrain;
      image.path = absl::StrCat(added.name, "/", image.path);
      ++data.dataset.classes[image.label].train;
      data.images.push_back(std::move(image));
      ++data.added_images;
    }
  }
  data.dataset.train_images = data.dataset.val_images = 0;
  for (const ClassCount& c : data.dataset.classes) {
    data.dataset.train_images += c.train;
    data.dataset.val_images += c.val;
  }
  return data;
}

std::string ContentHash(const DatasetImage& image) {
  return std::filesystem::path(image.blob_path).filename().string();
}

absl::Status CheckHoldout(const JobData& data, const DatasetInfo& holdout, const std::vector<DatasetImage>& images) {
  std::map<std::string, const DatasetImage*> trained;
  for (const DatasetImage& image : data.images) {
    if (image.split == Split::kTrain) trained.emplace(ContentHash(image), &image);
  }
  int64_t shared = 0;
  std::string example;
  for (const DatasetImage& image : images) {
    const auto it = trained.find(ContentHash(image));
    if (it == trained.end()) continue;
    if (shared++ == 0) example = absl::StrCat(" ('", image.path, "' is training image '", it->second->path, "')");
  }
  if (shared == 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "spec.promotion.holdout: dataset '", holdout.name, "' shares ", shared, " of its ", images.size(),
      " images (by content) with the job's training data", example,
      "; a holdout must be images the job never trains on"));
}

}  // namespace graft::core
