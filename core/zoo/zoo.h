#pragma once

#include <torch/types.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/zoo/registry.h"
#include "core/zoo/state_dict.h"

namespace graft::core {

// A backbone whose ImageNet weights are loaded, in eval mode, on its device.
// `module` holds the weights as torchvision names them (state dicts, training
// copies, exports); `inference` is the optimised copy every forward pass uses:
// batch norm folded into the convolutions, channels-last on CPU, no autograd.
// Both are shared read-only; forward passes take `compute_mu` so that
// concurrent requests do not oversubscribe the intra-op thread pool.
struct ResidentBackbone {
  const BackboneSpec* spec = nullptr;
  BackbonePtr module;
  BackbonePtr inference;
  torch::Device device{torch::kCPU};
  std::mutex compute_mu;
};

// What ListBackbones/GetBackbone report.
struct BackboneStatus {
  const BackboneSpec* spec = nullptr;
  int64_t parameter_count = 0;
  std::vector<std::string> blocks;  // List: resident backbones only; Get: always
  bool weights_present = false;
  std::string weights_path;
  std::string weights_format;
  std::string load_error;  // weights found but refused
  std::string device;      // empty when not resident
  int64_t resident_bytes = 0;
  double load_seconds = 0;
};

struct ZooOptions {
  std::string zoo_dir;
  // "auto" (CUDA when available, else CPU), "cpu", or "cuda:N".
  std::string device = "auto";
};

// The backbones of the registry with their weights, loaded once at start.
class Zoo {
 public:
  // Scans `zoo_dir` for <name>-imagenet.{safetensors,pth} (or the official
  // torchvision file name) and loads each found backbone. A file that fails to
  // load is reported in its status, not fatal.
  static absl::StatusOr<std::unique_ptr<Zoo>> Create(const ZooOptions& options);

  std::vector<BackboneStatus> List() const;
  // NOT_FOUND for an unknown name.
  absl::StatusOr<BackboneStatus> Get(const std::string& name) const;
  // NOT_FOUND for an unknown name; FAILED_PRECONDITION when it has no weights.
  absl::StatusOr<std::shared_ptr<ResidentBackbone>> Resident(const std::string& name) const;

  // Loads a backbone whose weights arrived in the zoo directory after start
  // (PullBackbone): resident from then on. A no-op when already resident.
  absl::StatusOr<BackboneStatus> LoadNow(const std::string& name);

  // ImageNet class names in torchvision order ("class N" where the zoo
  // directory has no imagenet_classes.txt).
  const std::vector<std::string>& imagenet_labels() const { return labels_; }
  const torch::Device& device() const { return device_; }
  const std::string& zoo_dir() const { return options_.zoo_dir; }

 private:
  struct Entry {
    BackboneStatus status;
    std::shared_ptr<ResidentBackbone> resident;
  };
  Zoo(ZooOptions options, torch::Device device) : options_(std::move(options)), device_(device) {}
  const Entry* FindEntry(const std::string& name) const;
  Entry* FindEntry(const std::string& name);
  void LoadEntry(Entry& entry);

  ZooOptions options_;
  torch::Device device_;
  // One per registry spec, fixed at Create; an entry's contents change only
  // in LoadNow, under mu_.
  std::vector<Entry> entries_;
  mutable std::mutex mu_;
  std::vector<std::string> labels_;
};

// A backbone's block names, building it once (cached) when needed.
absl::StatusOr<std::vector<std::string>> BlockNames(const BackboneSpec& spec);

// The device graft uses for `spec` ("auto", "cpu", "cuda", "cuda:N").
absl::StatusOr<torch::Device> ResolveDevice(const std::string& spec);

// Prepares a backbone for inference on `device`: eval mode, no gradients,
// channels-last convolution weights on CPU.
void PrepareForInference(BackboneImpl& module, const torch::Device& device);

// The optimised inference copy of `weights`: folded batch norm, then
// PrepareForInference.
absl::StatusOr<BackbonePtr> MakeInferenceBackbone(const BackboneSpec& spec, const StateDict& weights,
                                                  const torch::Device& device);

}  // namespace graft::core
