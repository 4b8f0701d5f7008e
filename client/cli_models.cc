// graft models [show ID | rm ID] | export MODEL -o FILE

#include <iomanip>
#include <ostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cli_commands.h"
#include "client/client.h"
#include "core/util/files.h"

namespace graft::client {
namespace {

absl::Status List(GraftClient& client, const Globals& g, std::ostream& out) {
  auto r = client.ListModels();
  if (!r.ok()) return r.status();
  if (g.json) {
    out << ToJson(*r) << "\n";
    return absl::OkStatus();
  }
  out << std::left << std::setw(20) << "ID" << std::setw(15) << "BACKBONE" << std::setw(9) << "CLASSES" << std::setw(9)
      << "VAL_ACC" << std::setw(11) << "SIZE" << std::setw(18) << "JOB" << "CREATED\n";
  for (const auto& m : r->models()) {
    std::ostringstream acc;
    acc << std::fixed << std::setprecision(4) << m.best_metrics().val_accuracy();
    out << std::left << std::setw(20) << m.id() << std::setw(15) << m.backbone() << std::setw(9) << m.class_names_size()
        << std::setw(9) << acc.str() << std::setw(11) << HumanBytes(m.bytes()) << std::setw(18) << m.job_id()
        << Timestamp(m.created_at().seconds()) << "\n";
  }
  return absl::OkStatus();
}

void PrintModel(const v1::Model& m, std::ostream& out) {
  out << "id:       " << m.id() << "\n"
      << "job:      " << m.job_id() << "\n"
      << "backbone: " << m.backbone() << "\n"
      << "classes:  " << absl::StrJoin(m.class_names(), ", ") << "\n"
      << "input:    " << m.preprocessing().height() << "x" << m.preprocessing().width() << "\n"
      << "trained:  head" << (m.trained_blocks_size() ? " + " + absl::StrJoin(m.trained_blocks(), " ") : "") << "\n"
      << "size:     " << HumanBytes(m.bytes()) << " (own weights; the backbone is shared)\n"
      << "best:     " << EpochRow(m.best_metrics()) << "\n"
      << "final:    " << EpochRow(m.final_metrics()) << "\n"
      << "created:  " << Timestamp(m.created_at().seconds()) << "\n";
}

}  // namespace

void AddModelCommands(CLI::App& app, const Globals& g, std::ostream& out, Action* action) {
  auto* models = app.add_subcommand("models", "list, show and delete fine-tuned models");
  models->callback([&g, &out, action, models]() {
    if (models->get_subcommands().empty()) *action = [&g, &out](GraftClient& c) { return List(c, g, out); };
  });
  auto id = std::make_shared<std::string>();
  auto* show = models->add_subcommand("show", "one model in full");
  show->add_option("id", *id, "model id")->required();
  show->callback([&g, &out, action, id]() {
    *action = [&g, &out, id](GraftClient& c) { return Show(c.GetModel(*id), g, out, PrintModel); };
  });
  auto rm_id = std::make_shared<std::string>();
  auto* rm = models->add_subcommand("rm", "delete a model (requests in flight finish on it)");
  rm->add_option("id", *rm_id, "model id")->required();
  rm->callback([&out, action, rm_id]() {
    *action = [&out, rm_id](GraftClient& c) -> absl::Status {
      if (auto s = c.DeleteModel(*rm_id); !s.ok()) return s;
      out << "deleted model " << *rm_id << "\n";
      return absl::OkStatus();
    };
  });
  auto model = std::make_shared<std::string>();
  auto file = std::make_shared<std::string>();
  auto* exp = app.add_subcommand("export", "write a model as one safetensors file (torchvision names + metadata)");
  exp->add_option("model", *model, "model id")->required();
  exp->add_option("--output,-o", *file, "output file")->required();
  exp->callback([&out, action, model, file]() {
    *action = [&out, model, file](GraftClient& c) -> absl::Status {
      auto bytes = c.ExportModel(*model);
      if (!bytes.ok()) return bytes.status();
      if (auto s = core::WriteFileAtomic(*file, *bytes); !s.ok()) return s;
      out << "wrote " << *file << " (" << HumanBytes(static_cast<int64_t>(bytes->size())) << ")\n";
      return absl::OkStatus();
    };
  });
}

}  // namespace graft::client
