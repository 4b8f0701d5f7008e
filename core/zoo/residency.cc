// Residency: loading backbones on first use (fetching their weights when
// absent), the device memory budget, LRU eviction and pins.

#include <chrono>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/util/limit_error.h"
#include "core/util/log.h"
#include "core/util/status_macros.h"
#include "core/util/torch_status.h"
#include "core/zoo/zoo.h"

namespace graft::core {
namespace fs = std::filesystem;
namespace {

// Changes when a file is replaced or rewritten.
int64_t FileStamp(const std::string& path) {
  std::error_code ec;
  const auto time = fs::last_write_time(path, ec);
  const auto size = fs::file_size(path, ec);
  return ec ? 0 : static_cast<int64_t>(time.time_since_epoch().count()) ^ static_cast<int64_t>(size);
}

double UnixSeconds(std::chrono::system_clock::time_point t) {
  return t.time_since_epoch().count() == 0 ? 0 : std::chrono::duration<double>(t.time_since_epoch()).count();
}

absl::Status UnknownBackbone(const std::string& name) {
  return absl::NotFoundError(absl::StrCat("unknown backbone '", name, "'; graft backbones lists them"));
}

}  // namespace

BackboneStatus Zoo::StatusLocked(const Entry& e) const {
  BackboneStatus status = e.status;
  status.last_used = UnixSeconds(e.last_used);
  status.users = e.resident != nullptr ? e.resident.use_count() - 1 : 0;
  return status;
}

absl::StatusOr<std::shared_ptr<ResidentBackbone>> Zoo::Resident(const std::string& name) const {
  return Resident(name, {});
}

absl::StatusOr<std::shared_ptr<ResidentBackbone>> Zoo::Resident(const std::string& name,
                                                                const std::function<bool()>& cancelled) const {
  std::shared_ptr<Entry> e;
  {
    absl::MutexLock lock(&mu_);
    e = FindEntryLocked(name);
    if (e == nullptr) return UnknownBackbone(name);
    if (e->resident != nullptr) {
      e->last_used = clock().Now();
      return e->resident;
    }
  }
  ASSIGN_OR_RETURN(std::shared_ptr<ResidentBackbone> loaded, LoadOnDemand(e, cancelled));
  if (loaded != nullptr) return loaded;
  return Missing(*e);
}

int64_t Zoo::EstimateBytes(const Entry& e) const {
  {
    absl::MutexLock lock(&mu_);
    if (e.measured_bytes > 0) return e.measured_bytes;
  }
  // The module and its inference copy (which folds batch norm away: a little
  // smaller), measured on a randomly initialised copy on the CPU.
  const auto built = GuardInternal("building " + e.status.spec->name, [&]() -> absl::StatusOr<int64_t> {
    return 2 * e.status.spec->make()->StateBytes();
  });
  const int64_t bytes = built.ok() ? *built : 2 * 4 * e.status.spec->parameter_count;
  absl::MutexLock lock(&mu_);
  const_cast<Entry&>(e).measured_bytes = bytes;
  return bytes;
}

absl::StatusOr<std::shared_ptr<ResidentBackbone>> Zoo::LoadOnDemand(const std::shared_ptr<Entry>& e,
                                                                    const std::function<bool()>& cancelled) const {
  const BackboneSpec& spec = *e->status.spec;
  const std::string path = spec.custom ? spec.source : FindWeightsFile(spec);
  if (path.empty()) return std::shared_ptr<ResidentBackbone>();
  absl::MutexLock loading(&load_mu_);  // one load at a time; others wait for it
  std::string failed;
  {
    absl::MutexLock lock(&mu_);
    if (e->resident != nullptr) {
      e->last_used = clock().Now();
      return e->resident;
    }
    if (e->failed_file == path && e->failed_stamp == FileStamp(path)) failed = e->status.load_error;
  }
  if (failed.empty()) {
    RETURN_IF_ERROR(MakeRoom(EstimateBytes(*e), absl::StrCat("loading ", spec.name), cancelled, /*refuse=*/true));
    Entry loaded;  // built outside mu_: loading takes seconds
    loaded.status.spec = e->status.spec;
    loaded.status.parameter_count = e->status.parameter_count;
    LoadEntry(loaded);
    {
      absl::MutexLock lock(&mu_);
      const bool pinned = e->status.pinned;
      const int64_t evictions = e->status.evictions;
      e->status = loaded.status;
      e->status.pinned = pinned;
      e->status.evictions = evictions;
      if (loaded.resident != nullptr) {
        e->resident = loaded.resident;
        e->last_used = clock().Now();
        e->measured_bytes = loaded.status.resident_bytes;
        e->failed_file.clear();
      } else {
        e->failed_file = path;
        e->failed_stamp = FileStamp(path);
        failed = e->status.load_error;
      }
    }
    if (failed.empty()) {
      if (options_.observer != nullptr) options_.observer->OnLoad(spec.name, device_.str(), loaded.status.load_seconds);
      return loaded.resident;
    }
  }
  return absl::FailedPreconditionError(absl::StrCat("backbone '", spec.name, "' has weights at ", path,
                                                    " that could not be loaded: ", failed,
                                                    "; replace the file (it is read again once it changes)"));
}

DeviceMemoryUse Zoo::MemoryLocked() const {
  DeviceMemoryUse use;
  use.device = device_.str();
  use.budget = budget_;
  for (const auto& e : entries_) {
    if (e->resident != nullptr) use.backbones += e->status.resident_bytes;
  }
  use.models = ledger_->held(DeviceLedger::Kind::kModel);
  use.jobs = ledger_->held(DeviceLedger::Kind::kJob);
  return use;
}

DeviceMemoryUse Zoo::Memory() const {
  absl::MutexLock lock(&mu_);
  return MemoryLocked();
}

std::shared_ptr<ResidentBackbone> Zoo::EvictLocked(Entry& e) const {
  std::shared_ptr<ResidentBackbone> gone = std::move(e.resident);
  e.resident = nullptr;
  ABSL_LOG(INFO) << "backbone " << e.status.spec->name << " evicted from " << e.status.device << " ("
                 << HumanBytes(e.status.resident_bytes) << ")";
  e.status.device.clear();
  e.status.resident_bytes = 0;
  e.status.blocks.clear();
  ++e.status.evictions;
  return gone;
}

absl::Status Zoo::MakeRoom(int64_t needed, const std::string& what, const std::function<bool()>& cancelled,
                           bool refuse) const {
  const auto give_up = std::chrono::steady_clock::now() + options_.memory_wait;
  for (;;) {
    std::shared_ptr<ResidentBackbone> freed;  // freed after unlocking
    std::string evicted;
    {
      absl::MutexLock lock(&mu_);
      if (budget_ <= 0) return absl::OkStatus();
      const DeviceMemoryUse use = MemoryLocked();
      if (use.used() + needed <= use.budget) return absl::OkStatus();
      Entry* victim = nullptr;
      for (const auto& e : entries_) {
        if (e->resident == nullptr || e->status.pinned || e->resident.use_count() > 1) continue;
        if (victim == nullptr || e->last_used < victim->last_used) victim = e.get();
      }
      if (victim != nullptr) {
        evicted = victim->status.spec->name;
        freed = EvictLocked(*victim);
      } else {
        if (!refuse) return absl::OkStatus();
        int64_t pinned = 0;
        std::vector<std::string> pins, busy;
        for (const auto& e : entries_) {
          if (e->resident == nullptr) continue;
          if (e->status.pinned) {
            pinned += e->status.resident_bytes;
            pins.push_back(absl::StrCat(e->status.spec->name, " ", HumanBytes(e->status.resident_bytes)));
          } else {
            busy.push_back(absl::StrCat(e->status.spec->name, " ", HumanBytes(e->status.resident_bytes)));
          }
        }
        // Pins and models stay; backbones in use and jobs end.
        const bool never = needed + pinned + use.models > use.budget;
        const std::string numbers = absl::StrCat(
            what, " needs ", HumanBytes(needed), " of ", use.device, " memory but ", HumanBytes(use.used()), " of its ",
            HumanBytes(use.budget), " budget (--device_memory_budget) is held: backbones in use ",
            busy.empty() ? "none" : absl::StrJoin(busy, ", "), "; pinned ",
            pins.empty() ? "none" : absl::StrJoin(pins, ", "), "; published models ", HumanBytes(use.models),
            "; running jobs ", HumanBytes(use.jobs));
        if (never) {
          return LimitError(absl::StatusCode::kResourceExhausted,
                            absl::StrCat(numbers, ". It cannot fit until the budget grows or a backbone is unpinned "
                                                  "(graft backbones pin --off NAME)"),
                            "device_memory_budget");
        }
        if (!cancelled || cancelled() || std::chrono::steady_clock::now() >= give_up) {
          return LimitError(absl::StatusCode::kResourceExhausted,
                            absl::StrCat(numbers, ". Retry when requests or jobs using those backbones end"),
                            "device_memory_budget");
        }
      }
    }
    if (freed != nullptr) {
      freed.reset();
      if (options_.observer != nullptr) options_.observer->OnEvict(evicted, device_.str());
      continue;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

std::shared_ptr<DeviceLedger::Charge> Zoo::Charge(DeviceLedger::Kind kind, int64_t bytes) const {
  (void)MakeRoom(bytes, "", {}, /*refuse=*/false);
  return DeviceLedger::Hold(ledger_, kind, bytes);
}

absl::Status Zoo::Missing(const Entry& e) const {
  const BackboneSpec& spec = *e.status.spec;
  const std::string& n = spec.name;
  const std::string file = OfficialFile(spec);
  const std::string put =
      absl::StrCat("put ", file.empty() ? "" : file + " or ", n, "-imagenet.safetensors into the zoo directory '",
                   options_.zoo_dir, "' (used at once, no restart)");
  if (file.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("backbone '", n, "' has no ImageNet weights and no official file to fetch; ", put));
  }
  if (options_.fetcher == nullptr || options_.fetcher->options().offline) {
    return absl::FailedPreconditionError(
        absl::StrCat("backbone '", n, "' has no ImageNet weights and graftd is --offline; ", put));
  }
  const FetchProgress p = options_.fetcher->Start(file);
  if (p.running) {
    return absl::UnavailableError(
        absl::StrCat("backbone '", n, "': fetching its ImageNet weights ", options_.fetcher->Url(file), " (",
                     p.bytes_total > 0 ? absl::StrCat(p.percent(), "% of ", p.bytes_total >> 20, " MiB") : "starting",
                     "); retry in a few seconds"));
  }
  if (!p.result.ok()) {
    return absl::Status(
        p.result.code(),
        absl::StrCat("backbone '", n, "': fetching its ImageNet weights failed: ", p.result.message(), "; ", put));
  }
  return absl::UnavailableError(absl::StrCat("backbone '", n, "': its weights were just fetched; retry"));
}

absl::StatusOr<std::shared_ptr<ResidentBackbone>> Zoo::AwaitResident(const std::string& name,
                                                                     const std::function<bool()>& cancelled) const {
  for (int idle = 0;;) {
    auto resident = Resident(name, cancelled);
    if (resident.ok() || !absl::IsUnavailable(resident.status()) || (cancelled && cancelled())) return resident;
    // A fetch that ended without the file appearing is not waited for again.
    if (!Fetching(name).running && ++idle > 2) return resident;
    WaitForFetch(name, cancelled, std::chrono::seconds(1));
  }
}

FetchProgress Zoo::Fetching(const std::string& name) const {
  const auto status = Get(name);
  if (!status.ok() || options_.fetcher == nullptr || OfficialFile(*status->spec).empty()) return FetchProgress{};
  return options_.fetcher->Progress(OfficialFile(*status->spec));
}

void Zoo::WaitForFetch(const std::string& name, const std::function<bool()>& cancelled,
                       std::chrono::milliseconds timeout) const {
  const auto status = Get(name);
  if (!status.ok() || options_.fetcher == nullptr || OfficialFile(*status->spec).empty()) return;
  options_.fetcher->Wait(OfficialFile(*status->spec), cancelled, timeout);
}

absl::StatusOr<BackboneStatus> Zoo::LoadNow(const std::string& name) {
  std::shared_ptr<Entry> e;
  {
    absl::MutexLock lock(&mu_);
    e = FindEntryLocked(name);
    if (e == nullptr) return UnknownBackbone(name);
  }
  ASSIGN_OR_RETURN(const std::shared_ptr<ResidentBackbone> loaded, LoadOnDemand(e));
  if (loaded == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("no weights for '", e->status.spec->name, "' in ", options_.zoo_dir));
  }
  absl::MutexLock lock(&mu_);
  return StatusLocked(*e);
}

absl::StatusOr<BackboneStatus> Zoo::Pin(const std::string& name, bool pinned) {
  std::shared_ptr<Entry> e;
  {
    absl::MutexLock lock(&mu_);
    e = FindEntryLocked(name);
    if (e == nullptr) return UnknownBackbone(name);
    e->status.pinned = pinned;
    if (!pinned) return StatusLocked(*e);
  }
  auto resident = Resident(name);
  // Pinned while its weights are fetched: resident (and kept) once they are.
  if (!resident.ok() && !absl::IsUnavailable(resident.status())) {
    absl::MutexLock lock(&mu_);
    e->status.pinned = false;
    return resident.status();
  }
  absl::MutexLock lock(&mu_);
  ABSL_LOG(INFO) << "backbone " << e->status.spec->name << " pinned";
  if (!resident.ok()) return resident.status();
  return StatusLocked(*e);
}

absl::StatusOr<BackboneStatus> Zoo::Unload(const std::string& name) {
  std::shared_ptr<ResidentBackbone> freed;
  BackboneStatus status;
  {
    absl::MutexLock lock(&mu_);
    const auto e = FindEntryLocked(name);
    if (e == nullptr) return UnknownBackbone(name);
    if (e->resident != nullptr && e->resident.use_count() > 1) {
      return absl::FailedPreconditionError(absl::StrCat("backbone '", e->status.spec->name, "' is in use by ",
                                                        e->resident.use_count() - 1,
                                                        " requests or jobs; unload it when they end"));
    }
    e->status.pinned = false;
    if (e->resident != nullptr) freed = EvictLocked(*e);
    status = StatusLocked(*e);
  }
  if (freed != nullptr) {
    freed.reset();
    if (options_.observer != nullptr) options_.observer->OnEvict(status.spec->name, device_.str());
  }
  return status;
}

absl::Status Zoo::Preload() {
  std::vector<std::string> names;
  for (const std::string& name : options_.preload) {
    if (name != "all") {
      names.push_back(name);
      continue;
    }
    absl::MutexLock lock(&mu_);
    for (const auto& e : entries_) {
      if (e->status.spec->custom || !FindWeightsFile(*e->status.spec).empty()) names.push_back(e->status.spec->name);
    }
  }
  for (const std::string& name : names) {
    {
      absl::MutexLock lock(&mu_);
      if (FindEntryLocked(name) == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat("--preload: unknown backbone '", name, "'"));
      }
    }
    const auto pinned = Pin(name, true);
    if (!pinned.ok()) ABSL_LOG(WARNING) << "--preload " << name << ": " << pinned.status().message();
  }
  return absl::OkStatus();
}

}  // namespace graft::core
