#include "core/train/trainer_checkpoint.h"
#include "core/util/json.h"

#include <torch/serialize.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "core/util/files.h"
#include "core/util/status_macros.h"
#include "core/util/torch_status.h"

namespace graft::core {
nlohmann::json EpochMetricsToJson(const EpochMetrics& m) {
  return {{"stage", m.stage}, {"epoch", m.epoch}, {"train_loss", m.train_loss}, {"train_accuracy", m.train_accuracy},
          {"val_loss", m.val_loss}, {"val_accuracy", m.val_accuracy},
          {"val_macro_f1", m.val_macro_f1}, {"learning_rate", m.learning_rate},
          {"images_per_second", m.images_per_second}, {"epoch_seconds", m.epoch_seconds},
          {"frozen_part_cached", m.frozen_part_cached}, {"frozen_part_bf16", m.frozen_part_bf16}};
}

EpochMetrics EpochMetricsFromJson(const nlohmann::json& j) {
  EpochMetrics m;
  m.stage = JsonInt(j, "stage", 0);
  m.epoch = JsonInt(j, "epoch", 0);
  m.train_loss = j.value("train_loss", 0.0);
  m.train_accuracy = j.value("train_accuracy", 0.0);
  m.val_loss = j.value("val_loss", 0.0);
  m.val_accuracy = j.value("val_accuracy", 0.0);
  m.val_macro_f1 = j.value("val_macro_f1", 0.0);
  m.learning_rate = j.value("learning_rate", 0.0);
  m.images_per_second = j.value("images_per_second", 0.0);
  m.epoch_seconds = j.value("epoch_seconds", 0.0);
  m.frozen_part_cached = j.value("frozen_part_cached", false);
  m.frozen_part_bf16 = j.value("frozen_part_bf16", false);
  return m;
}

namespace {

void WriteState(torch::serialize::OutputArchive& archive, const std::string& key, const StateDict& state) {
  torch::serialize::OutputArchive sub;
  std::vector<std::string> names;
  for (size_t i = 0; i < state.size(); ++i) {
    sub.write(std::to_string(i), state[i].second.detach().to(torch::kCPU));
    names.push_back(state[i].first);
  }
  sub.write("names", c10::IValue(nlohmann::json(names).dump()));
  archive.write(key, sub);
}

StateDict ReadState(torch::serialize::InputArchive& archive, const std::string& key) {
  torch::serialize::InputArchive sub;
  archive.read(key, sub);
  c10::IValue names_value;
  sub.read("names", names_value);
  StateDict out;
  const auto names = nlohmann::json::parse(names_value.toStringRef());
  for (size_t i = 0; i < names.size(); ++i) {
    torch::Tensor t;
    sub.read(std::to_string(i), t);
    out.emplace_back(names[i].get<std::string>(), t);
  }
  return out;
}

// LibTorch's zip writer must never see a failed write: in 1.13 its
// destructor writes the end of the archive again and throws out of the
// unwinding, which terminates the process (a full disk killed graftd). So
// graft writes the bytes itself, remembers the first error, and tells the
// writer every write went through.
class CheckpointFile {
 public:
  explicit CheckpointFile(const std::string& tmp) {
    fd_ = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) error_ = errno;
  }
  ~CheckpointFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  size_t Write(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    size_t done = 0;
    while (error_ == 0 && done < n) {
      const ssize_t w = ::write(fd_, p + done, n - done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        error_ = w < 0 ? errno : ENOSPC;
        break;
      }
      done += static_cast<size_t>(w);
    }
    return n;
  }
  // 0 or the errno of the first failure, fsync and close included.
  int Finish() {
    if (fd_ >= 0) {
      if (error_ == 0 && ::fsync(fd_) != 0) error_ = errno;
      if (::close(fd_) != 0 && error_ == 0) error_ = errno;
      fd_ = -1;
    }
    return error_;
  }

 private:
  int fd_ = -1;
  int error_ = 0;
};

absl::Status SaveTrainerCheckpointUnchecked(const std::string& path, const TrainerCheckpoint& c,
                                            torch::optim::Optimizer& optimizer) {
  const std::string tmp = path + ".tmp";
  int error = 0;
  RETURN_IF_ERROR(GuardInternal("saving checkpoint " + path, [&]() -> absl::Status {
    torch::serialize::OutputArchive archive;
    nlohmann::json meta = {{"stage", c.stage},
                           {"epoch", c.epoch},
                           {"stopped", c.stopped},
                           {"best", c.stopper.best},
                           {"best_epoch", c.stopper.best_epoch},
                           {"wait", c.stopper.wait},
                           {"best_metrics", EpochMetricsToJson(c.best_metrics)},
                           {"last_metrics", EpochMetricsToJson(c.last_metrics)},
                           {"batches_done", c.batches_done},
                           {"partial", {c.partial_loss_sum, c.partial_correct, c.partial_seen}}};
    if (c.job_best.epoch > 0) {
      meta["job_best"] = {{"epoch", c.job_best.epoch},
                          {"stage", c.job_best.stage},
                          {"value", c.job_best.value},
                          {"metrics", EpochMetricsToJson(c.job_best.metrics)}};
    }
    archive.write("meta", c10::IValue(meta.dump()));
    WriteState(archive, "weights", c.weights);
    WriteState(archive, "best_weights", c.best_weights);
    if (c.job_best.epoch > 0) WriteState(archive, "job_best_weights", c.job_best.weights);
    torch::serialize::OutputArchive optimizer_archive;
    optimizer.save(optimizer_archive);
    archive.write("optimizer", optimizer_archive);
    CheckpointFile file(tmp);
    archive.save_to([&file](const void* data, size_t n) { return file.Write(data, n); });
    error = file.Finish();
    return absl::OkStatus();
  }));
  if (error != 0) {
    ::unlink(tmp.c_str());
    return WriteError("checkpoint", path, error);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return WriteError("checkpoint", path, err);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SaveTrainerCheckpoint(const std::string& path, const TrainerCheckpoint& c,
                                   torch::optim::Optimizer& optimizer) {
  const absl::Status saved = SaveTrainerCheckpointUnchecked(path, c, optimizer);
  if (saved.ok()) return saved;
  // Whatever failed, the half-written temporary goes (the last checkpoint stays).
  std::error_code ec;
  std::filesystem::remove(path + ".tmp", ec);
  return saved;
}

absl::StatusOr<TrainerCheckpoint> LoadTrainerCheckpoint(const std::string& path) {
  return GuardExceptions(absl::StatusCode::kDataLoss, "reading checkpoint " + path,
                         [&]() -> absl::StatusOr<TrainerCheckpoint> {
                           torch::serialize::InputArchive archive;
                           archive.load_from(path);
                           c10::IValue meta_value;
                           archive.read("meta", meta_value);
                           const auto meta = nlohmann::json::parse(meta_value.toStringRef());
                           TrainerCheckpoint c;
                           c.stage = meta.at("stage").get<size_t>();
                           c.epoch = meta.at("epoch").get<int>();
                           c.stopped = meta.value("stopped", false);
                           c.stopper.best = meta.at("best").get<double>();
                           c.stopper.best_epoch = meta.at("best_epoch").get<int>();
                           c.stopper.wait = meta.at("wait").get<int>();
                           c.best_metrics = EpochMetricsFromJson(meta.at("best_metrics"));
                           c.last_metrics = EpochMetricsFromJson(meta.at("last_metrics"));
                           c.batches_done = meta.value("batches_done", 0);
                           if (c.batches_done > 0) {
                             const auto& partial = meta.at("partial");
                             c.partial_loss_sum = partial.at(0).get<double>();
                             c.partial_correct = partial.at(1).get<double>();
                             c.partial_seen = partial.at(2).get<double>();
                           }
                           c.weights = ReadState(archive, "weights");
                           c.best_weights = ReadState(archive, "best_weights");
                           if (meta.contains("job_best")) {  // absent in checkpoints of older versions
                             const auto& b = meta.at("job_best");
                             c.job_best.epoch = b.at("epoch").get<int>();
                             c.job_best.stage = b.at("stage").get<int>();
                             c.job_best.value = b.at("value").get<double>();
                             c.job_best.metrics = EpochMetricsFromJson(b.at("metrics"));
                             c.job_best.weights = ReadState(archive, "job_best_weights");
                           }
                           return c;
                         });
}

}  // namespace graft::core
