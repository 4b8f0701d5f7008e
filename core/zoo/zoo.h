#pragma once

#include <torch/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/status/statusor.h"
#include "core/util/clock.h"
#include "core/zoo/device_memory.h"
#include "core/zoo/precision.h"
#include "core/zoo/registry.h"
#include "core/zoo/state_dict.h"
#include "core/zoo/int8.h"
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
  absl::Mutex compute_mu;  // held by every forward of `inference`, `module` and `bf16`
  // The bfloat16 copy of `inference` on CPU (Zoo::Trunk), made at first use
  // and charged to the memory budget while the backbone stays resident.
  absl::Mutex variant_mu;
  BackbonePtr bf16 ABSL_GUARDED_BY(variant_mu);
  std::shared_ptr<DeviceLedger::Charge> bf16_charge ABSL_GUARDED_BY(variant_mu);
  // int8 trunks (Int8TrunkImpl) by calibration fingerprint, the most recently
  // used last; at most Zoo::kMaxInt8Trunks are kept.
  struct Int8Variant {
    std::string fingerprint;
    BackbonePtr trunk;
    std::shared_ptr<DeviceLedger::Charge> charge;
  };
  std::vector<Int8Variant> int8 ABSL_GUARDED_BY(variant_mu);
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
  double load_seconds = 0;  // of the last load
  bool pinned = false;      // never evicted (--preload, graft backbones pin)
  double last_used = 0;     // Unix seconds of the last request or job that took it; 0: never
  int64_t users = 0;        // requests, jobs and batches holding it now (not evictable while > 0)
  int64_t evictions = 0;    // times it was evicted since start
};

// What the device holds against --device_memory_budget.
struct DeviceMemoryUse {
  std::string device;
  int64_t budget = 0;  // 0: unbounded
  int64_t backbones = 0;
  int64_t models = 0;  // published models' own weights
  int64_t jobs = 0;    // running jobs' estimates
  int64_t used() const { return backbones + models + jobs; }
};

// Told of loads and evictions (metrics).
class ZooObserver {
 public:
  virtual ~ZooObserver() = default;
  virtual void OnLoad(const std::string& backbone, const std::string& device, double seconds) {}
  virtual void OnEvict(const std::string& backbone, const std::string& device) {}
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
  // The device memory the zoo's backbones, published models and running
  // jobs may hold (--device_memory_budget, ParseDeviceMemoryBudget: "auto",
  // "none", "75%", "6GiB", bytes). Loading beyond it evicts the least
  // recently used backbone that is neither pinned nor in use.
  std::string memory_budget = "none";
  // Loaded at Create and pinned (--preload); "all": every backbone with
  // weights. Others load when first used.
  std::vector<std::string> preload;
  // How long AwaitResident waits at most for memory to be freed (within the
  // caller's own deadline).
  std::chrono::milliseconds memory_wait{30000};
  ZooObserver* observer = nullptr;
  // Architectures beyond the registry, listed, found and loaded as its own
  // are (weights <name>-imagenet.safetensors or .pth in `zoo_dir`): the
  // tests' tiny backbones (tests/fakes). A name the registry has is refused.
  std::vector<BackboneSpec> extra_backbones;
  // When a backbone was last used (least recently used goes first); null:
  // the real clock.
  const WallClock* clock = nullptr;
};

// Options for `zoo_dir` on `device`, everything else at its default.
inline ZooOptions ZooAt(std::string zoo_dir, std::string device) {
  ZooOptions options;
  options.zoo_dir = std::move(zoo_dir);
  options.device = std::move(device);
  return options;
}

// The backbones of the registry and their residency on the device: loaded
// when first used (or at start with --preload), accounted in bytes against
// a memory budget, evicted least recently used first when a load needs room.
class Zoo {
 public:
  // Loads the --preload backbones (pinned) from <name>-imagenet.{safetensors,
  // pth} or the official torchvision file in `zoo_dir`; a file that fails to
  // load is reported in its status, not fatal. Then the custom backbones:
  // manifests `*.backbone.json` in `zoo_dir` (beside the user's TorchScript
  // file) and those registered earlier in `custom_dir`.
  static absl::StatusOr<std::unique_ptr<Zoo>> Create(const ZooOptions& options);

  std::vector<BackboneStatus> List() const;
  // NOT_FOUND for an unknown name.
  absl::StatusOr<BackboneStatus> Get(const std::string& name) const;
  // Whether `name`'s weights are here (in the zoo directory, loaded, or
  // built in to a custom backbone): a first use would start no download.
  // NOT_FOUND for an unknown name. Cheaper than Get (no block names).
  absl::StatusOr<bool> WeightsPresent(const std::string& name) const;
  // The resident backbone, loaded now when it is not (weights that arrived in
  // the zoo directory since start too: no restart), evicting least recently
  // used idle backbones for room; RESOURCE_EXHAUSTED with the numbers when
  // nothing can make room. Without any: UNAVAILABLE while its
  // official file is fetched (the fetch starts here; the message has its
  // progress and a retry hint), FAILED_PRECONDITION when it cannot be
  // (--offline, no official file) or the file did not load; NOT_FOUND for an
  // unknown name.
  absl::StatusOr<std::shared_ptr<ResidentBackbone>> Resident(const std::string& name) const;
  // Resident, waiting while backbones in use hold the memory it needs (at
  // most ZooOptions::memory_wait) until `cancelled` says to stop.
  absl::StatusOr<std::shared_ptr<ResidentBackbone>> Resident(const std::string& name,
                                                             const std::function<bool()>& cancelled) const;
  // Resident, waiting while its weights are fetched or while backbones in use
  // hold the memory it needs (at most ZooOptions::memory_wait), until
  // `cancelled` (a client's deadline or cancel) says to stop.
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

  // Makes a backbone resident now (graft backbones load, PullBackbone);
  // FAILED_PRECONDITION without weights. A no-op when already resident.
  absl::StatusOr<BackboneStatus> LoadNow(const std::string& name);
  // Pins (loading it) or unpins a backbone: a pinned one is never evicted.
  absl::StatusOr<BackboneStatus> Pin(const std::string& name, bool pinned);
  // Evicts a backbone now (and unpins it); FAILED_PRECONDITION while a
  // request or job uses it. Loaded again at its next use.
  absl::StatusOr<BackboneStatus> Unload(const std::string& name);

  // Holds `bytes` of the budget for a published model or a running job
  // until the handle is gone, evicting idle backbones to make room (never
  // refused: jobs are admitted by --max_job_memory_bytes and
  // --max_concurrent_jobs, models when their job ends).
  std::shared_ptr<DeviceLedger::Charge> Charge(DeviceLedger::Kind kind, int64_t bytes) const;
  DeviceMemoryUse Memory() const;

  // The trunk that computes `precision` for `backbone` (PrecisionSupported's
  // refusals first): `inference` for fp32, and for bf16 on CUDA (run under
  // bfloat16 autocast); on CPU for bf16 a bfloat16 copy of it, made now at
  // first use (about a second for ResNet-50) and kept while the backbone is
  // resident, its bytes charged like a model's.
  // For int8 (CPU only) the trunk quantized with `calibration` (required:
  // FAILED_PRECONDITION without one), made at first use of that calibration;
  // the kMaxInt8Trunks most recently used calibrations stay made.
  absl::StatusOr<BackbonePtr> Trunk(ResidentBackbone& backbone, Precision precision,
                                    const Int8Calibration* calibration = nullptr) const;
  static constexpr size_t kMaxInt8Trunks = 4;
  // The ranges of every value of the backbone's int8 graph over `batches`
  // (preprocessed images [N, 3, H, W] as the trunk takes them);
  // FAILED_PRECONDITION when the backbone has no int8 form.
  absl::StatusOr<Int8Calibration> CalibrateInt8(const ResidentBackbone& backbone,
                                                const std::vector<torch::Tensor>& batches) const;

  // Registers a TorchScript backbone: validates it (LoadTorchScriptBackbone),
  // copies the file into custom_dir with a manifest so that it survives
  // restarts, and makes it resident. ALREADY_EXISTS for a taken name.
  absl::StatusOr<BackboneStatus> Register(CustomBackboneDef def);
  // Forgets a backbone registered through Register and deletes its files.
  // Models and jobs already holding it keep it alive until they end.
  absl::Status Unregister(const std::string& name);

  // ImageNet class names in torchvision order ("class N" where the zoo
  // directory has no imagenet_classes.txt of 1000 lines). Read again when the
  // file appears or changes (its size or modification time), as new weights
  // in the zoo directory are, so a running graftd needs no restart.
  std::shared_ptr<const std::vector<std::string>> imagenet_labels() const;
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
    std::chrono::system_clock::time_point last_used{};
    int64_t measured_bytes = 0;  // of its last load: the next load's estimate
  };
  Zoo(ZooOptions options, torch::Device device) : options_(std::move(options)), device_(device) {}
  const WallClock& clock() const { return options_.clock != nullptr ? *options_.clock : WallClock::Real(); }
  // Callers hold mu_.
  std::shared_ptr<Entry> FindEntryLocked(const std::string& name) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void LoadEntry(Entry& entry) const;
  // The weights file of a registry backbone in the zoo directory, or "".
  std::string FindWeightsFile(const BackboneSpec& spec) const;

  void SeeZooDirectory(BackboneStatus& status) const;
  // Get without the block names (they may need the architecture built).
  absl::StatusOr<BackboneStatus> StatusWithoutBlocks(const std::string& name) const;
  // Loads a backbone whose weights file is there (making room for it):
  // null when there is none. `cancelled` null: no waiting for memory.
  absl::StatusOr<std::shared_ptr<ResidentBackbone>> LoadOnDemand(const std::shared_ptr<Entry>& e,
                                                                 const std::function<bool()>& cancelled = {}) const;
  // The bytes a load of `e` will hold: its last load's, else measured on a
  // randomly initialised copy (the module and its inference copy).
  int64_t EstimateBytes(const Entry& e) const;
  // Evicts least recently used idle unpinned backbones until `needed` more
  // bytes fit the budget; waits for users to leave while `cancelled` says
  // not to stop (and within memory_wait), else RESOURCE_EXHAUSTED with the
  // numbers. `refuse`: false only for charges, which evict what they can.
  absl::Status MakeRoom(int64_t needed, const std::string& what, const std::function<bool()>& cancelled,
                        bool refuse) const;
  // Drops `e`'s resident copy (mu_ held): returned so that the caller frees
  // it after unlocking.
  std::shared_ptr<ResidentBackbone> EvictLocked(Entry& e) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  DeviceMemoryUse MemoryLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  BackboneStatus StatusLocked(const Entry& e) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Why `e` has no weights, starting their fetch when it can.
  absl::Status Missing(const Entry& e) const;
  // Makes a validated custom backbone resident (its spec kept for good).
  absl::StatusOr<std::shared_ptr<Entry>> MakeCustomEntry(BackboneSpec spec, std::string manifest_path,
                                                         bool registered);
  void LoadCustomManifests(const std::string& dir, const std::string& suffix, bool registered);
  // Pins and loads ZooOptions::preload.
  absl::Status Preload();

  ZooOptions options_;
  torch::Device device_;
  // One per registry spec (fixed at Create), then the custom backbones. An
  // entry's contents change only in LoadNow and LoadOnDemand; the list in Register and
  // Unregister; both under mu_.
  std::vector<std::shared_ptr<Entry>> entries_ ABSL_GUARDED_BY(mu_);
  // Custom specs are never freed: residents, models and cached block names
  // point at them.
  std::vector<std::unique_ptr<BackboneSpec>> custom_specs_;
  absl::Mutex register_mu_ ABSL_ACQUIRED_BEFORE(load_mu_, mu_);  // one Register/Unregister at a time
  mutable absl::Mutex load_mu_ ABSL_ACQUIRED_BEFORE(mu_);          // one on-demand load at a time
  mutable absl::Mutex mu_;
  mutable absl::Mutex labels_mu_;
  mutable std::shared_ptr<const std::vector<std::string>> labels_ ABSL_GUARDED_BY(labels_mu_);
  // The file's size and time when read ("" : none).
  mutable std::string labels_stamp_ ABSL_GUARDED_BY(labels_mu_);
  std::shared_ptr<DeviceLedger> ledger_ = std::make_shared<DeviceLedger>();
  int64_t budget_ = 0;  // 0: unbounded
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
