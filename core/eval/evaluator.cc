#include "core/eval/evaluator.h"

#include <torch/torch.h>

#include <chrono>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/data/image_codec.h"
#include "core/util/files.h"
#include "core/util/ids.h"
#include "core/util/log.h"
#include "core/util/limit_error.h"
#include "core/util/status_macros.h"
#include "core/util/torch_status.h"

namespace graft::core {

absl::StatusOr<std::vector<int>> ModelLabels(const ServingModel& model, const std::vector<std::string>& dataset_classes,
                                             const std::vector<DatasetImage>& images) {
  std::map<std::string, int> index;
  const auto& names = model.info().class_names;
  for (size_t i = 0; i < names.size(); ++i) index.emplace(names[i], static_cast<int>(i));
  std::vector<int> mapped(dataset_classes.size(), -1);
  for (size_t k = 0; k < dataset_classes.size(); ++k) {
    if (auto it = index.find(dataset_classes[k]); it != index.end()) mapped[k] = it->second;
  }
  std::vector<int> out;
  std::vector<std::string> unknown;
  out.reserve(images.size());
  for (const DatasetImage& image : images) {
    const int label = image.label;
    if (label < 0 || static_cast<size_t>(label) >= mapped.size()) {
      return absl::DataLossError(absl::StrCat("image '", image.path, "' has label ", label, " outside its dataset"));
    }
    if (mapped[label] < 0) {
      if (std::find(unknown.begin(), unknown.end(), dataset_classes[label]) == unknown.end()) {
        unknown.push_back(dataset_classes[label]);
      }
      continue;
    }
    out.push_back(mapped[label]);
  }
  if (!unknown.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("the dataset has images of classes model ", model.info().id,
                                                   " does not predict: ", absl::StrJoin(unknown, ", "),
                                                   " (its classes: ", absl::StrJoin(names, ", "), ")"));
  }
  return out;
}

absl::Status RunDatasetPass(const Predictor& predictor, const DatasetPass& pass, const ChunkFn& on_chunk,
                            const PassProgressFn& progress, const Caller& caller) {
  const int64_t total = static_cast<int64_t>(pass.images.size());
  const size_t chunk = static_cast<size_t>(std::max(1, pass.chunk));
  for (size_t start = 0; start < pass.images.size(); start += chunk) {
    if (caller.cancelled && caller.cancelled()) return absl::CancelledError("cancelled by the client");
    const size_t end = std::min(pass.images.size(), start + chunk);
    std::vector<ImageInput> inputs;
    std::vector<const DatasetImage*> images;
    for (size_t i = start; i < end; ++i) {
      auto bytes = ReadFile(pass.images[i].blob_path);
      if (!bytes.ok()) {
        return absl::DataLossError(absl::StrCat("stored image '", pass.images[i].path, "': ", bytes.status().message()));
      }
      inputs.push_back({std::move(*bytes), {}});
      images.push_back(&pass.images[i]);
    }
    auto probs = predictor.Outputs(pass.model, inputs, caller, pass.precision);
    if (!probs.ok()) {
      // Name the image when it was one image's fault (the Predictor says "image i: ...").
      return Rephrased(probs.status().code(),
                       absl::StrCat("images ", start, "..", end - 1, " (from '", pass.images[start].path,
                                    "'): ", probs.status().message()),
                       probs.status());
    }
    RETURN_IF_ERROR(on_chunk(images, *probs));
    if (progress) progress(static_cast<int64_t>(end), total);
  }
  return absl::OkStatus();
}

namespace {

absl::StatusOr<Evaluation> Evaluate(const Predictor& predictor, const DatasetPass& pass, const std::string& dataset,
                                    const std::string& split, std::optional<uint64_t> profile_seed,
                                    const PassProgressFn& progress, const Caller& caller) {
  const auto start = std::chrono::steady_clock::now();
  if (pass.images.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("dataset '", dataset, "' has no ", split, " images"));
  }
  ASSIGN_OR_RETURN(const std::vector<int> labels, ModelLabels(*pass.model, pass.dataset_classes, pass.images));
  std::vector<torch::Tensor> parts, embeddings;
  std::vector<std::string> files;
  files.reserve(pass.images.size());
  RETURN_IF_ERROR(RunDatasetPass(
      predictor, pass,
      [&](const std::vector<const DatasetImage*>& images, const ModelOutputs& out) {
        parts.push_back(out.probabilities);
        if (profile_seed) embeddings.push_back(out.embeddings);
        for (const DatasetImage* image : images) files.push_back(image->path);
        return absl::OkStatus();
      },
      progress, caller));
  const torch::Tensor probabilities = torch::cat(parts);
  Evaluation out;
  if (profile_seed) {
    auto profile = MakeReferenceProfile(torch::cat(embeddings), probabilities, *profile_seed);
    if (profile.ok()) {
      out.profile = std::make_shared<const ReferenceProfile>(std::move(*profile));
    } else {
      ABSL_LOG(ERROR) << "model " << pass.model->info().id << " has no reference profile: " << profile.status().message();
    }
  }
  ASSIGN_OR_RETURN(EvaluationReport report,
                   ComputeReport(probabilities, labels, files, pass.model->info().class_names));
  // Thumbnails of the hardest images for the HTML report. The stored images
  // passed ingestion's decode checks; one that no longer decodes gets none.
  std::map<std::string, const DatasetImage*> by_path;
  for (const HardExample& e : report.highest_loss) by_path.emplace(e.file, nullptr);
  for (const DatasetImage& image : pass.images) {
    if (auto it = by_path.find(image.path); it != by_path.end() && it->second == nullptr) it->second = &image;
  }
  for (HardExample& e : report.highest_loss) {
    const DatasetImage* image = by_path[e.file];
    if (image == nullptr) continue;
    auto bytes = ReadFile(image->blob_path);
    if (!bytes.ok()) continue;
    if (auto thumbnail = JpegThumbnail(*bytes, kThumbnailSide, {}); thumbnail.ok()) e.thumbnail = std::move(*thumbnail);
  }
  report.model = pass.model->info().id;
  report.dataset = dataset;
  report.split = split;
  report.computed_at = NowSeconds();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  out.report = std::move(report);
  return out;
}

}  // namespace

absl::StatusOr<EvaluationReport> EvaluateModel(const Predictor& predictor, const DatasetPass& pass,
                                               const std::string& dataset, const std::string& split,
                                               const PassProgressFn& progress, const Caller& caller) {
  ASSIGN_OR_RETURN(Evaluation e, Evaluate(predictor, pass, dataset, split, std::nullopt, progress, caller));
  return std::move(e.report);
}

absl::StatusOr<Evaluation> EvaluateAndProfile(const Predictor& predictor, const DatasetPass& pass,
                                              const std::string& dataset, const std::string& split, uint64_t seed,
                                              const PassProgressFn& progress, const Caller& caller) {
  return Evaluate(predictor, pass, dataset, split, seed, progress, caller);
}

}  // namespace graft::core
