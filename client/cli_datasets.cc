// graft datasets [upload PATH --name N | show ID | rm ID]

#include <chrono>
#include <cstdio>
#include <iomanip>
#include <ostream>

#include "absl/strings/str_cat.h"
#include "client/cli_commands.h"
#include "client/client.h"

namespace graft::client {

void PrintDataset(const v1::Dataset& d, std::ostream& out) {
  out << "id:       " << d.id() << "\n"
      << "name:     " << d.name() << "\n"
      << "layout:   " << (d.layout() == v1::DATASET_LAYOUT_TRAIN_VAL ? "train/ + val/" : "flat, validation split")
      << "\n"
      << "images:   " << d.train_images() << " train, " << d.val_images() << " val, " << HumanBytes(d.bytes()) << "\n"
      << "rejected: " << d.rejected_count() << "\n"
      << "classes:  " << d.classes_size() << "\n";
  for (const auto& c : d.classes()) {
    out << "  " << std::left << std::setw(24) << c.name() << std::right << std::setw(7) << c.train() << " train"
        << std::setw(7) << c.val() << " val\n";
  }
}

namespace {

struct UploadOptions {
  std::string path;
  std::string name;
  float val_fraction = 0;
  uint64_t seed = 0;
};

absl::Status Upload(GraftClient& client, const Globals& g, const UploadOptions& o, std::ostream& out,
                    std::ostream& err) {
  const auto start = std::chrono::steady_clock::now();
  const bool tty = StderrIsTty();
  auto last_draw = start - std::chrono::seconds(1);
  auto draw = [&](const GraftClient::UploadProgress& p) {
    const auto now = std::chrono::steady_clock::now();
    if (!tty || (now - last_draw < std::chrono::milliseconds(100) && p.bytes_sent < p.bytes_total)) return;
    last_draw = now;
    const double secs = std::chrono::duration<double>(now - start).count();
    const double rate = secs > 0 ? static_cast<double>(p.bytes_sent) / secs : 0;
    const double eta = rate > 0 ? static_cast<double>(p.bytes_total - p.bytes_sent) / rate : -1;
    const double fraction = p.bytes_total > 0 ? static_cast<double>(p.bytes_sent) / p.bytes_total : 1;
    err << "\r" << Bar(fraction, 30) << " " << HumanBytes(p.bytes_sent) << " / " << HumanBytes(p.bytes_total) << "  "
        << p.files_sent << "/" << p.files_total << " files  " << HumanBytes(static_cast<int64_t>(rate)) << "/s  ETA "
        << HumanDuration(eta) << "   " << std::flush;
  };
  auto r = client.UploadDataset(o.path, o.name, o.val_fraction, o.seed, draw);
  if (tty) err << "\n";
  if (!r.ok()) return r.status();
  if (g.json) {
    out << ToJson(*r) << "\n";
    return absl::OkStatus();
  }
  PrintDataset(r->dataset(), out);
  if (r->rejected_size() > 0) {
    out << "rejected files:\n";
    for (const auto& f : r->rejected()) out << "  " << f.path() << ": " << f.reason() << "\n";
  }
  return absl::OkStatus();
}

absl::Status ListDatasets(GraftClient& client, const Globals& g, std::ostream& out) {
  auto r = client.ListDatasets();
  if (!r.ok()) return r.status();
  if (g.json) {
    out << ToJson(*r) << "\n";
    return absl::OkStatus();
  }
  out << std::left << std::setw(17) << "ID" << std::setw(24) << "NAME" << std::setw(9) << "CLASSES" << std::setw(8)
      << "TRAIN" << std::setw(8) << "VAL" << std::setw(11) << "SIZE" << "CREATED\n";
  for (const auto& d : r->datasets()) {
    out << std::left << std::setw(17) << d.id() << std::setw(24) << d.name() << std::setw(9) << d.classes_size()
        << std::setw(8) << d.train_images() << std::setw(8) << d.val_images() << std::setw(11) << HumanBytes(d.bytes())
        << Timestamp(d.created_at().seconds()) << "\n";
  }
  return absl::OkStatus();
}

}  // namespace

void AddDatasetCommands(CLI::App& app, const Globals& g, std::ostream& out, std::ostream& err, Action* action) {
  auto* datasets = app.add_subcommand("datasets", "list, upload, show and delete datasets");
  datasets->callback([&g, &out, action, datasets]() {
    if (datasets->get_subcommands().empty()) *action = [&g, &out](GraftClient& c) { return ListDatasets(c, g, out); };
  });
  auto uo = std::make_shared<UploadOptions>();
  auto* upload = datasets->add_subcommand("upload", "upload a folder (one sub-folder per class) or a tar/tar.gz/zip");
  upload->add_option("path", uo->path, "folder or archive")->required()->check(CLI::ExistingPath);
  upload->add_option("--name,-n", uo->name, "dataset name")->required();
  upload->add_option("--val_fraction", uo->val_fraction, "validation split when there is no val/ folder (default 0.2)");
  upload->add_option("--seed", uo->seed, "seed of that split");
  upload->callback([&g, &out, &err, action, uo]() {
    *action = [&g, &out, &err, uo](GraftClient& c) { return Upload(c, g, *uo, out, err); };
  });
  auto id = std::make_shared<std::string>();
  auto* show = datasets->add_subcommand("show", "one dataset in full");
  show->add_option("id", *id, "dataset id or name")->required();
  show->callback([&g, &out, action, id]() {
    *action = [&g, &out, id](GraftClient& c) { return Show(c.GetDataset(*id), g, out, PrintDataset); };
  });
  auto rm_id = std::make_shared<std::string>();
  auto* rm = datasets->add_subcommand("rm", "delete a dataset and its images");
  rm->add_option("id", *rm_id, "dataset id or name")->required();
  rm->callback([&out, action, rm_id]() {
    *action = [&out, rm_id](GraftClient& c) -> absl::Status {
      if (auto s = c.DeleteDataset(*rm_id); !s.ok()) return s;
      out << "deleted dataset " << *rm_id << "\n";
      return absl::OkStatus();
    };
  });
}

}  // namespace graft::client
