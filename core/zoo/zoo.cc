#include "core/zoo/zoo.h"

#include <algorithm>
#include <limits>
#include <map>

#include <ATen/Context.h>

#include <torch/cuda.h>
#include <c10/core/InferenceMode.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "core/util/log.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/util/files.h"
#include "core/util/status_macros.h"
#include "core/util/torch_status.h"
#include "core/zoo/download.h"
#include "core/zoo/state_dict.h"

namespace graft::core {
namespace fs = std::filesystem;

absl::StatusOr<torch::Device> ResolveDevice(const std::string& spec) {
  if (spec == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  if (spec == "cpu") return torch::Device(torch::kCPU);
  if (spec.rfind("cuda", 0) == 0) {
    if (!torch::cuda::is_available()) return absl::FailedPreconditionError("device '" + spec + "' requested but CUDA is not available");
    return GuardExceptions(absl::StatusCode::kInvalidArgument, "device '" + spec + "'",
                           [&]() -> absl::StatusOr<torch::Device> { return torch::Device(spec); });
  }
  return absl::InvalidArgumentError("device must be auto, cpu or cuda:N, got '" + spec + "'");
}

void PrepareForInference(BackboneImpl& module, const torch::Device& device) {
  torch::NoGradGuard no_grad;
  module.eval();
  module.to(device);
  for (auto& p : module.parameters()) {
    p.set_requires_grad(false);
    if (device.is_cpu() && p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
  }
}

absl::StatusOr<BackbonePtr> MakeInferenceBackbone(const BackboneSpec& spec, const StateDict& weights,
                                                  const torch::Device& device) {
  return GuardInternal("optimising " + spec.name, [&]() -> absl::StatusOr<BackbonePtr> {
    BackbonePtr m = spec.make();
    RETURN_IF_ERROR(LoadStateDict(*m, weights));
    if (spec.custom) m->to(device);  // freezing (FoldOwn) turns its weights into constants where they are
    m->FoldBatchNorm();
    PrepareForInference(*m, device);
    if (spec.onednn_inference && device.is_cpu() && at::hasMKLDNN()) m->UseOneDnnLayout();
    return m;
  });
}

absl::StatusOr<std::unique_ptr<Zoo>> Zoo::Create(const ZooOptions& options) {
  ASSIGN_OR_RETURN(const torch::Device device, ResolveDevice(options.device));
  for (const auto& [name, file] : options.weights_files) {
    const BackboneSpec* spec = Registry::BuiltIn().Find(name);
    if (spec == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("--weights_file: unknown backbone '", name, "'"));
    }
    // torchvision's scheme: <name>-[<tag>-]<hash>.pth, its hash checked at download.
    if (!absl::StartsWith(file, spec->name + "-") || !absl::EndsWith(file, ".pth") || HashPrefix(file).empty() ||
        file.find_first_of("/\\") != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("--weights_file: '", file, "' for ", spec->name,
                                                     " is not a torchvision weights file name (", spec->name,
                                                     "-<hash>.pth, e.g. ", spec->weights_file, ")"));
    }
  }
  ZooOptions canonical = options;
  canonical.weights_files.clear();
  for (const auto& [name, file] : options.weights_files) canonical.weights_files[Registry::BuiltIn().Find(name)->name] = file;
  std::unique_ptr<Zoo> zoo(new Zoo(canonical, device));
  ASSIGN_OR_RETURN(zoo->budget_, ParseDeviceMemoryBudget(options.memory_budget, device));
  if (zoo->budget_ > 0) {
    ABSL_LOG(INFO) << "device memory budget on " << device.str() << ": " << HumanBytes(zoo->budget_);
  } else if (options.memory_budget.empty() || options.memory_budget == "auto") {
    ABSL_LOG(WARNING) << "the memory of " << device.str() << " cannot be read: residency is unbounded; give "
                      << "--device_memory_budget a size (6GiB) to bound it";
  }
  std::error_code ec;
  if (!options.zoo_dir.empty() && !fs::is_directory(options.zoo_dir, ec)) {
    ABSL_LOG(WARNING) << "zoo directory '" << options.zoo_dir << "' does not exist; no weights loaded";
  }
  for (const BackboneSpec& spec : Registry::BuiltIn().specs()) {
    auto entry = std::make_shared<Entry>();
    entry->status.spec = &spec;
    // Nothing is built for a backbone without weights: its parameter count
    // is the spec's, its blocks are listed by Get on demand.
    entry->status.parameter_count = spec.parameter_count;
    absl::MutexLock lock(&zoo->mu_);
    zoo->entries_.push_back(std::move(entry));
  }
  for (const BackboneSpec& spec : zoo->options_.extra_backbones) {
    if (Registry::BuiltIn().Find(spec.name) != nullptr || spec.custom || !spec.make) {
      return absl::InvalidArgumentError(absl::StrCat("extra backbone '", spec.name,
                                                     "': its name is the registry's, or it has no module"));
    }
    auto entry = std::make_shared<Entry>();
    entry->status.spec = &spec;  // options_ lives as long as the zoo and is never changed
    entry->status.parameter_count = spec.parameter_count;
    absl::MutexLock lock(&zoo->mu_);
    zoo->entries_.push_back(std::move(entry));
  }
  if (!options.zoo_dir.empty()) zoo->LoadCustomManifests(options.zoo_dir, ".backbone.json", false);
  if (!options.custom_dir.empty()) zoo->LoadCustomManifests(options.custom_dir, ".json", true);
  RETURN_IF_ERROR(zoo->Preload());
  zoo->imagenet_labels();  // read now: a bad file is logged at start
  return zoo;
}

std::shared_ptr<const std::vector<std::string>> Zoo::imagenet_labels() const {
  const fs::path path = fs::path(options_.zoo_dir) / "imagenet_classes.txt";
  std::error_code ec;
  std::string stamp;
  if (!options_.zoo_dir.empty()) {
    const auto size = fs::file_size(path, ec);
    const auto time = ec ? fs::file_time_type{} : fs::last_write_time(path, ec);
    if (!ec) stamp = absl::StrCat(size, "@", time.time_since_epoch().count());
  }
  absl::MutexLock lock(&labels_mu_);
  if (labels_ != nullptr && stamp == labels_stamp_) return labels_;
  auto labels = std::make_shared<std::vector<std::string>>();
  if (!stamp.empty()) {
    std::ifstream in(path);
    for (std::string line; std::getline(in, line) && labels->size() <= 1000;) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      labels->push_back(line);
    }
  }
  if (labels->size() != 1000) {
    if (!labels->empty()) ABSL_LOG(WARNING) << path << " does not hold 1000 lines; using numbered labels";
    labels->clear();
    for (int i = 0; i < 1000; ++i) labels->push_back(absl::StrCat("class ", i));
  }
  labels_ = std::move(labels);
  labels_stamp_ = stamp;
  return labels_;
}

std::string Zoo::OfficialFile(const BackboneSpec& spec) const {
  const auto chosen = options_.weights_files.find(spec.name);
  return chosen != options_.weights_files.end() ? chosen->second : spec.weights_file;
}

std::string Zoo::FindWeightsFile(const BackboneSpec& spec) const {
  if (options_.zoo_dir.empty()) return "";
  for (const std::string& name : {spec.name + "-imagenet.safetensors", spec.name + "-imagenet.pth", OfficialFile(spec)}) {
    std::error_code ec;
    if (!name.empty() && fs::is_regular_file(fs::path(options_.zoo_dir) / name, ec)) {
      return (fs::path(options_.zoo_dir) / name).string();
    }
  }
  return "";
}

void Zoo::LoadEntry(Entry& entry) const {
  const BackboneSpec& spec = *entry.status.spec;
  const std::string path = spec.custom ? spec.source : FindWeightsFile(spec);
  if (path.empty()) return;
  entry.status.weights_path = path;
  entry.status.weights_format =
      spec.custom ? "torchscript" : fs::path(path).extension() == ".safetensors" ? "safetensors" : "pth";
  const auto start = std::chrono::steady_clock::now();
  auto resident = std::make_shared<ResidentBackbone>();
  resident->spec = &spec;
  resident->device = device_;
  const absl::Status loaded = [&]() -> absl::Status {
    StateDict weights;  // a custom backbone's are inside its module
    if (!spec.custom) {
      ASSIGN_OR_RETURN(weights, ReadWeightsFile(path));
    }
    weights = ToModuleNames(spec, std::move(weights));
    RETURN_IF_ERROR(GuardInternal("loading " + spec.name, [&]() -> absl::Status {
      resident->module = spec.make();
      RETURN_IF_ERROR(LoadStateDict(*resident->module, weights));
      torch::NoGradGuard no_grad;
      resident->module->eval();
      resident->module->to(device_);
      for (auto& p : resident->module->parameters()) p.set_requires_grad(false);
      return absl::OkStatus();
    }));
    ASSIGN_OR_RETURN(resident->inference, MakeInferenceBackbone(spec, weights, device_));
    return absl::OkStatus();
  }();
  if (!loaded.ok()) {
    entry.status.load_error = std::string(loaded.message());
    ABSL_LOG(WARNING) << "backbone " << spec.name << ": " << loaded.message();
    return;
  }
  entry.status.load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  entry.status.weights_present = true;
  entry.status.device = device_.str();
  entry.status.resident_bytes = resident->module->StateBytes() + resident->inference->StateBytes();
  for (const auto& b : resident->module->blocks()) entry.status.blocks.push_back(b.name);
  entry.resident = std::move(resident);
  ABSL_LOG(INFO) << "backbone " << spec.name << " resident on " << entry.status.device << " ("
                 << entry.status.resident_bytes << " bytes, " << entry.status.load_seconds << " s) from " << path;
}

std::shared_ptr<Zoo::Entry> Zoo::FindEntryLocked(const std::string& name) const {
  if (const BackboneSpec* spec = Registry::BuiltIn().Find(name)) {
    for (const auto& e : entries_) {
      if (e->status.spec == spec) return e;
    }
  }
  for (bool exact : {true, false}) {
    for (const auto& e : entries_) {
      const std::string& n = e->status.spec->name;
      // The registry's own names were looked up above: these are custom and
      // extra backbones.
      if (exact ? n == name : absl::EqualsIgnoreCase(n, name)) return e;
    }
  }
  return nullptr;
}

std::vector<BackboneStatus> Zoo::List() const {
  std::vector<BackboneStatus> out;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& e : entries_) out.push_back(StatusLocked(*e));
  }
  for (BackboneStatus& status : out) SeeZooDirectory(status);
  return out;
}

void Zoo::SeeZooDirectory(BackboneStatus& status) const {
  // Weights put in or taken out of the zoo directory since start: seen now
  // (loaded at first use).
  if (status.spec->custom || !status.device.empty()) return;
  status.weights_path = FindWeightsFile(*status.spec);
  status.weights_present = !status.weights_path.empty();
  status.weights_format = !status.weights_present                                    ? ""
                          : fs::path(status.weights_path).extension() == ".safetensors" ? "safetensors"
                                                                                       : "pth";
  if (!status.weights_present) status.load_error.clear();
}

absl::StatusOr<BackboneStatus> Zoo::StatusWithoutBlocks(const std::string& name) const {
  BackboneStatus status;
  {
    absl::MutexLock lock(&mu_);
    const auto e = FindEntryLocked(name);
    if (e == nullptr) return absl::NotFoundError(absl::StrCat("unknown backbone '", name, "'; graft backbones lists them"));
    status = StatusLocked(*e);
  }
  SeeZooDirectory(status);
  return status;
}

absl::StatusOr<BackboneStatus> Zoo::Get(const std::string& name) const {
  ASSIGN_OR_RETURN(BackboneStatus status, StatusWithoutBlocks(name));
  if (status.blocks.empty()) {
    ASSIGN_OR_RETURN(status.blocks, BlockNames(*status.spec));
  }
  return status;
}

absl::StatusOr<bool> Zoo::WeightsPresent(const std::string& name) const {
  ASSIGN_OR_RETURN(const BackboneStatus status, StatusWithoutBlocks(name));
  return status.weights_present;
}

namespace {
ABSL_CONST_INIT absl::Mutex block_names_mu(absl::kConstInit);
auto* const block_names ABSL_GUARDED_BY(block_names_mu) = new std::map<const BackboneSpec*, std::vector<std::string>>();
}  // namespace

absl::StatusOr<std::vector<std::string>> BlockNames(const BackboneSpec& spec) {
  absl::MutexLock lock(&block_names_mu);
  auto it = block_names->find(&spec);
  if (it != block_names->end()) return it->second;
  ASSIGN_OR_RETURN(std::vector<std::string> names,
                   GuardInternal("building " + spec.name, [&]() -> absl::StatusOr<std::vector<std::string>> {
                     std::vector<std::string> out;
                     const BackbonePtr model = spec.make();  // alive while its blocks are read
                     for (const auto& b : model->blocks()) out.push_back(b.name);
                     return out;
                   }));
  (*block_names)[&spec] = names;
  return names;
}

absl::StatusOr<std::shared_ptr<Zoo::Entry>> Zoo::MakeCustomEntry(BackboneSpec spec, std::string manifest_path,
                                                                 bool registered) {
  auto owned = std::make_unique<BackboneSpec>(std::move(spec));
  auto entry = std::make_shared<Entry>();
  entry->status.spec = owned.get();
  entry->status.parameter_count = owned->parameter_count;
  entry->manifest_path = std::move(manifest_path);
  entry->registered = registered;
  LoadEntry(*entry);
  {
    absl::MutexLock lock(&mu_);
    custom_specs_.push_back(std::move(owned));
  }
  if (entry->resident == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("custom backbone '", entry->status.spec->name,
                                                   "' could not be made resident: ", entry->status.load_error));
  }
  return entry;
}

void Zoo::LoadCustomManifests(const std::string& dir, const std::string& suffix, bool registered) {
  std::error_code ec;
  std::vector<fs::path> manifests;
  for (const auto& f : fs::directory_iterator(dir, ec)) {
    const std::string file = f.path().filename().string();
    if (f.is_regular_file(ec) && file.size() > suffix.size() && absl::EndsWith(file, suffix)) {
      manifests.push_back(f.path());
    }
  }
  std::sort(manifests.begin(), manifests.end());
  for (const fs::path& path : manifests) {
    const absl::Status status = [&]() -> absl::Status {
      ASSIGN_OR_RETURN(const CustomBackboneDef def, ReadCustomManifest(path.string()));
      {
        absl::MutexLock lock(&mu_);
        if (FindEntryLocked(def.name) != nullptr) {
          return absl::AlreadyExistsError(absl::StrCat("the name '", def.name, "' is taken"));
        }
      }
      ASSIGN_OR_RETURN(BackboneSpec spec, LoadTorchScriptBackbone(def));
      ASSIGN_OR_RETURN(auto entry, MakeCustomEntry(std::move(spec), path.string(), registered));
      absl::MutexLock lock(&mu_);
      entries_.push_back(std::move(entry));
      return absl::OkStatus();
    }();
    if (!status.ok()) ABSL_LOG(ERROR) << "custom backbone manifest " << path << " skipped: " << status.message();
  }
}

absl::StatusOr<BackboneStatus> Zoo::Register(CustomBackboneDef def) {
  absl::MutexLock serial(&register_mu_);
  if (options_.custom_dir.empty()) {
    return absl::FailedPreconditionError("this graftd has no directory for custom backbones");
  }
  RETURN_IF_ERROR(ValidateCustomName(def.name));
  {
    absl::MutexLock lock(&mu_);
    if (const auto e = FindEntryLocked(def.name)) {
      return absl::AlreadyExistsError(absl::StrCat("backbone '", def.name, "' exists already (",
                                                   e->status.spec->custom ? "a custom backbone" : "built in",
                                                   "); pick another name"));
    }
  }
  // Validate the user's file first, then keep a copy of our own.
  RETURN_IF_ERROR(LoadTorchScriptBackbone(def).status());
  std::error_code ec;
  fs::create_directories(options_.custom_dir, ec);
  const fs::path script = fs::path(options_.custom_dir) / (def.name + ".pt");
  const fs::path manifest = fs::path(options_.custom_dir) / (def.name + ".json");
  ASSIGN_OR_RETURN(const std::string bytes, ReadFile(def.torchscript_path));
  RETURN_IF_ERROR(WriteFileAtomic(script.string(), bytes));
  CustomBackboneDef stored = def;
  stored.torchscript_path = script.string();
  auto registered = [&]() -> absl::StatusOr<std::shared_ptr<Entry>> {
    ASSIGN_OR_RETURN(BackboneSpec spec, LoadTorchScriptBackbone(stored));
    ASSIGN_OR_RETURN(auto entry, MakeCustomEntry(std::move(spec), manifest.string(), true));
    stored.torchscript_path = script.filename().string();  // relative: the data dir may move
    RETURN_IF_ERROR(WriteFileAtomic(manifest.string(), CustomManifestJson(stored)));
    return entry;
  }();
  if (!registered.ok()) {
    fs::remove(script, ec);
    return registered.status();
  }
  absl::MutexLock lock(&mu_);
  entries_.push_back(*registered);
  ABSL_LOG(INFO) << "custom backbone " << def.name << " registered from " << def.torchscript_path;
  return (*registered)->status;
}

absl::Status Zoo::Unregister(const std::string& name) {
  absl::MutexLock serial(&register_mu_);
  std::shared_ptr<Entry> e;
  {
    absl::MutexLock lock(&mu_);
    e = FindEntryLocked(name);
    if (e == nullptr) return absl::NotFoundError(absl::StrCat("unknown backbone '", name, "'; graft backbones lists them"));
    if (!e->status.spec->custom) {
      return absl::FailedPreconditionError(absl::StrCat("'", e->status.spec->name, "' is built in; only custom backbones can be unregistered"));
    }
    if (!e->registered) {
      return absl::FailedPreconditionError(absl::StrCat("'", e->status.spec->name, "' comes from the manifest ",
                                                        e->manifest_path, "; remove that file and restart graftd"));
    }
  }
  // Manifest first: a crash between the two leaves an orphan file, never a
  // manifest without its module.
  std::error_code ec;
  fs::remove(e->manifest_path, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot remove ", e->manifest_path, ": ", ec.message()));
  fs::remove(e->status.spec->source, ec);
  absl::MutexLock lock(&mu_);
  entries_.erase(std::remove(entries_.begin(), entries_.end(), e), entries_.end());
  ABSL_LOG(INFO) << "custom backbone " << e->status.spec->name << " unregistered";
  return absl::OkStatus();
}

}  // namespace graft::core
