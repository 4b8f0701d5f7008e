#include "core/serve/predictor.h"

#include <ATen/core/grad_mode.h>
#include <c10/core/InferenceMode.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/data/transforms.h"
#include "core/util/status_macros.h"
#include "core/util/torch_status.h"

namespace graft::core {
namespace {

using Clock = std::chrono::steady_clock;

int64_t MicrosSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
}

absl::Status CheckTensor(const torch::Tensor& t, size_t index, const Preprocessing& p) {
  const auto shape = absl::StrCat("[", absl::StrJoin(t.sizes(), ", "), "]");
  if (t.scalar_type() != torch::kFloat32) return absl::InvalidArgumentError(absl::StrCat("image ", index, ": tensor must be float32"));
  const bool ok_rank = t.dim() == 3 || t.dim() == 4;
  const int64_t c = ok_rank ? t.size(t.dim() - 3) : 0;
  if (!ok_rank || c != 3 || t.size(-2) != p.height || t.size(-1) != p.width || (t.dim() == 4 && t.size(0) == 0)) {
    return absl::InvalidArgumentError(absl::StrCat("image ", index, ": tensor shape ", shape, " is not [3, ", p.height, ", ",
                                                   p.width, "] or [N, 3, ", p.height, ", ", p.width, "]"));
  }
  if (!torch::isfinite(t).all().item<bool>()) {
    return absl::InvalidArgumentError(absl::StrCat("image ", index, ": tensor holds NaN or infinite values"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<torch::Tensor> Predictor::BuildBatch(const ResidentBackbone& backbone,
                                                    const std::vector<ImageInput>& inputs, Timing& timing) const {
  const auto start = Clock::now();
  if (inputs.empty()) return absl::InvalidArgumentError("no images in the request");
  if (static_cast<int64_t>(inputs.size()) > options_.max_images) {
    return absl::InvalidArgumentError(absl::StrCat(inputs.size(), " images in one request; the limit is ", options_.max_images));
  }
  const Preprocessing& p = backbone.spec->preprocessing;
  std::vector<torch::Tensor> parts;
  int64_t total = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const ImageInput& in = inputs[i];
    if (in.tensor.defined()) {
      RETURN_IF_ERROR(CheckTensor(in.tensor, i, p));
      parts.push_back(in.tensor.dim() == 3 ? in.tensor.unsqueeze(0) : in.tensor);
    } else {
      auto image = DecodeImage(in.encoded, options_.limits);
      if (!image.ok()) return absl::InvalidArgumentError(absl::StrCat("image ", i, ": ", image.status().message()));
      auto tensor = PreprocessImage(*image, p);
      if (!tensor.ok()) return absl::InvalidArgumentError(absl::StrCat("image ", i, ": ", tensor.status().message()));
      parts.push_back(tensor->unsqueeze(0));
    }
    total += parts.back().size(0);
    if (total > options_.max_images) {
      return absl::InvalidArgumentError(absl::StrCat("more than ", options_.max_images, " images in one request"));
    }
  }
  auto batch = GuardInternal("batching", [&]() -> absl::StatusOr<torch::Tensor> { return torch::cat(parts, 0); });
  timing.decode_us = MicrosSince(start);
  return batch;
}

absl::StatusOr<PredictResult> Predictor::Predict(const std::string& name, const std::vector<ImageInput>& inputs,
                                                 int top_k) const {
  const auto start = Clock::now();
  ASSIGN_OR_RETURN(const std::shared_ptr<ResidentBackbone> backbone, zoo_.Resident(name));
  const int64_t classes = backbone->spec->num_classes;
  if (top_k <= 0 || top_k > classes) {
    return absl::InvalidArgumentError(absl::StrCat("top_k must be between 1 and ", classes, ", got ", top_k));
  }
  PredictResult result;
  ASSIGN_OR_RETURN(const torch::Tensor batch, BuildBatch(*backbone, inputs, result.timing));
  const auto queued = Clock::now();
  std::unique_lock<std::mutex> lock(backbone->compute_mu);
  result.timing.queue_us = MicrosSince(queued);
  const auto computing = Clock::now();
  auto probs = GuardInternal("forward " + backbone->spec->name, [&]() -> absl::StatusOr<torch::Tensor> {
    c10::InferenceMode guard;
    std::vector<torch::Tensor> out;
    for (int64_t b = 0; b < batch.size(0); b += options_.max_batch_size) {
      torch::Tensor x = batch.slice(0, b, b + options_.max_batch_size)
                            .to(backbone->device)
                            .contiguous(backbone->device.is_cpu() ? torch::MemoryFormat::ChannelsLast
                                                                  : torch::MemoryFormat::Contiguous);
      out.push_back(torch::softmax(backbone->module->forward(x), 1).to(torch::kCPU));
    }
    return torch::cat(out, 0);
  });
  lock.unlock();
  result.timing.compute_us = MicrosSince(computing);
  if (!probs.ok()) return probs.status();
  const auto [values, indices] = probs->topk(top_k, 1);
  const auto& labels = zoo_.imagenet_labels();
  for (int64_t i = 0; i < values.size(0); ++i) {
    std::vector<ClassScore> top;
    for (int k = 0; k < top_k; ++k) {
      const int index = static_cast<int>(indices[i][k].item<int64_t>());
      top.push_back({index, index < static_cast<int>(labels.size()) ? labels[index] : absl::StrCat("class ", index),
                     values[i][k].item<float>()});
    }
    result.images.push_back(std::move(top));
  }
  result.timing.total_us = MicrosSince(start);
  return result;
}

absl::StatusOr<EmbedResult> Predictor::Embed(const std::string& name, const std::vector<ImageInput>& inputs,
                                             const std::string& block) const {
  const auto start = Clock::now();
  ASSIGN_OR_RETURN(const std::shared_ptr<ResidentBackbone> backbone, zoo_.Resident(name));
  const auto& blocks = backbone->module->blocks();
  size_t end = blocks.size();
  if (!block.empty()) {
    end = 0;
    for (size_t i = 0; i < blocks.size(); ++i) {
      if (blocks[i].name == block) end = i + 1;
    }
    if (end == 0) {
      std::vector<std::string> names;
      for (const auto& b : blocks) names.push_back(b.name);
      return absl::InvalidArgumentError(absl::StrCat("backbone '", backbone->spec->name, "' has no block '", block,
                                                     "'; its blocks are ", absl::StrJoin(names, ", ")));
    }
  }
  EmbedResult result;
  ASSIGN_OR_RETURN(const torch::Tensor batch, BuildBatch(*backbone, inputs, result.timing));
  const auto queued = Clock::now();
  std::unique_lock<std::mutex> lock(backbone->compute_mu);
  result.timing.queue_us = MicrosSince(queued);
  const auto computing = Clock::now();
  auto features = GuardInternal("embed " + backbone->spec->name, [&]() -> absl::StatusOr<torch::Tensor> {
    c10::InferenceMode guard;
    std::vector<torch::Tensor> out;
    for (int64_t b = 0; b < batch.size(0); b += options_.max_batch_size) {
      torch::Tensor x = batch.slice(0, b, b + options_.max_batch_size).to(backbone->device);
      out.push_back(BackboneImpl::Pool(backbone->module->ForwardTrunk(x, 0, end)).to(torch::kCPU).contiguous());
    }
    return torch::cat(out, 0);
  });
  lock.unlock();
  result.timing.compute_us = MicrosSince(computing);
  if (!features.ok()) return features.status();
  result.embeddings = *features;
  result.timing.total_us = MicrosSince(start);
  return result;
}

}  // namespace graft::core
