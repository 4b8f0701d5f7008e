#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <iosfwd>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/cli_output.h"
#include "graft/v1/datasets.pb.h"
#include "graft/v1/models.pb.h"
#include "graft/v1/training.pb.h"

namespace graft::client {

class GraftClient;

// What a parsed subcommand will do once the client exists.
using Action = std::function<absl::Status(GraftClient&)>;

// Each adds its subcommands to `app`; the one the user picks stores its
// action in `*action`. Option storage lives as long as `app`.
void AddBackboneCommands(CLI::App& app, const Globals& g, std::ostream& out, Action* action);
void AddDatasetCommands(CLI::App& app, const Globals& g, std::ostream& out, std::ostream& err, Action* action);
void AddJobCommands(CLI::App& app, const Globals& g, std::ostream& out, std::ostream& err, Action* action);
// `graft retrain` (cli_retrain.cc; AddJobCommands adds it after lr-find).
void AddRetrainCommand(CLI::App& app, const Globals& g, std::ostream& out, std::ostream& err, Action* action);
void AddModelCommands(CLI::App& app, const Globals& g, std::ostream& out, Action* action);
void AddPredictionCommands(CLI::App& app, const Globals& g, std::ostream& out, Action* action);
void AddTokenCommands(CLI::App& app, const Globals& g, std::ostream& out, Action* action);

// `graft datasets show ID`: one dataset, its classes and split.
void PrintDataset(const v1::Dataset& d, std::ostream& out);
// `graft job ID`: one job in full; a search names its winner among the
// backbones it tried and counts its trials.
void PrintJob(const v1::Job& j, std::ostream& out);
// --monitor / --metric (val_loss, val_accuracy or val_macro_f1; CLI11 has
// checked the name) as the API's enum.
v1::Monitor MonitorOf(const std::string& name);
// A job just created: its id and state (or its JSON), then followed until it
// ends with `watch`.
absl::Status StartedJob(GraftClient& c, const Globals& g, const absl::StatusOr<v1::Job>& job, bool watch,
                        std::ostream& out, std::ostream& err);
// "val", "train" or "all" (the CLI's --split) as the API's split.
v1::DatasetSplit SplitOf(const std::string& split);
// A model's monitoring as `graft models monitor` prints it.
void PrintMonitoring(const v1::Model& m, std::ostream& out);
// `graft models optimize` (cli_optimize.cc; AddModelCommands adds it).
void AddOptimizeCommand(CLI::App& models, const Globals& g, std::ostream& out, Action* action);
// The precision a model serves in and its checks, as `graft models show` prints them.
void PrintPrecision(const v1::Model& m, std::ostream& out);
std::string PrecisionText(v1::Precision p);  // "fp32", "bf16", "int8"

}  // namespace graft::client
