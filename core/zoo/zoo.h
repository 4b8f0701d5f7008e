#pragma once

#include <torch/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/zoo/registry.h"
#include "core/zoo/state_dict.h"
#include "core/zoo/torchscript_backbone.h"
#include "core/zoo/weights_fetcher.h"

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
  // Where registered custom backbones are kept (their TorchScript file and
  // manifest); empty: RegisterBackbone is refused.
  std::string custom_dir;
  // Fetches official weights on first use (null: never; weights put in
  // zoo_dir are still found without a restart).
  WeightsFetcher* fetcher = nullptr;
  // Backbone name -> the torchvision weights file to use instead of the
  // registry's (another published version, e.g. resnet50-11ad3fa6.pth for
  // IMAGENET1K_V2): fetched and hash-checked the same way (--weights_file).
  std::map<std::string, std::string> weights_files;
};

// The backbones of the registry with their weights, loaded once at start.
class Zoo {
 public:
  // Scans `zoo_dir` for <name>-imagenet.{safetensors,pth} (or the official
  // torchvision file name) and loads each found backbone. A file that fails to
  // load is reported in its status, not fatal. Then loads the custom
  // backbones: manifests `*.backbone.json` in `zoo_dir` (beside the user's
  // TorchScript file) and those registered earlier in `custom_dir`.
  static absl::StatusOr<std::unique_ptr<Zoo>> Create(const ZooOptions& options);

  std::vector<BackboneStatus> List() const;
  // NOT_FOUND for an unknown name.
  absl::StatusOr<BackboneStatus> Get(const std::string& name) const;
  // The resident backbone. Weights that arrived in the zoo directory since
  // start are loaded now (no restart). Without any: UNAVAILABLE while its
  // official file is fetched (the fetch starts here; the message has its
  // progress and a retry hint), FAILED_PRECONDITION when it cannot be
  // (--offline, no official file) or the file did not load; NOT_FOUND for an
  // unknown name.
  absl::StatusOr<std::shared_ptr<ResidentBackbone>> Resident(const std::string& name) const;
  // Resident, waiting while its weights are fetched until `cancelled` (a
  // client's deadline or cancel) says to stop.
  absl::StatusOr<std::shared_ptr<ResidentBackbone>> AwaitResident(const std::string& name,
                                                                  const std::function<bool()>& cancelled) const;
  // The official weights file name for `spec`: the registry's, or the
  // operator's choice (ZooOptions::weights_files); empty when there is none.
  std::string OfficialFile(const BackboneSpec& spec) const;
  // The first-use fetch of the backbone's official file (empty: none).
  FetchProgress Fetching(const std::string& name) const;
  // Waits up to `timeout` for that fetch to end.
  void WaitForFetch(const std::string& name, const std::function<bool()>& cancelled,
                    std::chrono::milliseconds timeout) const;

  // Loads a backbone whose weights arrived in the zoo directory after start
  // (PullBackbone): resident from then on. A no-op when already resident.
  absl::StatusOr<BackboneStatus> LoadNow(const std::string& name);

  // Registers a TorchScript backbone: validates it (LoadTorchScriptBackbone),
  // copies the file into custom_dir with a manifest so that it survives
  // restarts, and makes it resident. ALREADY_EXISTS for a taken name.
  absl::StatusOr<BackboneStatus> Register(CustomBackboneDef def);
  // Forgets a backbone registered through Register and deletes its files.
  // Models and jobs already holding it keep it alive until they end.
  absl::Status Unregister(const std::string& name);

  // ImageNet class names in torchvision order ("class N" where the zoo
  // directory has no imagenet_classes.txt).
  const std::vector<std::string>& imagenet_labels() const { return labels_; }
  const torch::Device& device() const { return device_; }
  const std::string& zoo_dir() const { return options_.zoo_dir; }

 private:
  struct Entry {
    BackboneStatus status;
    std::shared_ptr<ResidentBackbone> resident;
    std::string manifest_path;  // custom backbones
    bool registered = false;    // through Register: its files are ours to delete
    // A file that failed to load, not read again until it changes.
    std::string failed_file;
    int64_t failed_stamp = 0;
  };
  Zoo(ZooOptions options, torch::Device device) : options_(std::move(options)), device_(device) {}
  // Callers hold mu_.
  std::shared_ptr<Entry> FindEntryLocked(const std::string& name) const;
  void LoadEntry(Entry& entry) const;
  // The weights file of a registry backbone in the zoo directory, or "".
  std::string FindWeightsFile(const BackboneSpec& spec) const;

  void SeeZooDirectory(BackboneStatus& status) const;
  // Loads a registry backbone whose weights file appeared: null when there is none.
  absl::StatusOr<std::shared_ptr<ResidentBackbone>> LoadOnDemand(const std::shared_ptr<Entry>& e) const;
  // Why `e` has no weights, starting their fetch when it can.
  absl::Status Missing(const Entry& e) const;
  // Makes a validated custom backbone resident (its spec kept for good).
  absl::StatusOr<std::shared_ptr<Entry>> MakeCustomEntry(BackboneSpec spec, std::string manifest_path,
                                                         bool registered);
  void LoadCustomManifests(const std::string& dir, const std::string& suffix, bool registered);

  ZooOptions options_;
  torch::Device device_;
  // One per registry spec (fixed at Create), then the custom backbones. An
  // entry's contents change only in LoadNow and LoadOnDemand; the list in Register and
  // Unregister; both under mu_.
  std::vector<std::shared_ptr<Entry>> entries_;
  // Custom specs are never freed: residents, models and cached block names
  // point at them.
  std::vector<std::unique_ptr<BackboneSpec>> custom_specs_;
  mutable std::mutex mu_;
  std::mutex register_mu_;  // one Register/Unregister at a time
  mutable std::mutex load_mu_;  // one on-demand load at a time
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
