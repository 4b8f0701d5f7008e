#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <iosfwd>

#include "absl/status/status.h"
#include "client/cli_output.h"
#include "graft/v1/datasets.pb.h"
#include "graft/v1/models.pb.h"

namespace graft::client {

class GraftClient;

// What a parsed subcommand will do once the client exists.
using Action = std::function<absl::Status(GraftClient&)>;

// Each adds its subcommands to `app`; the one the user picks stores its
// action in `*action`. Option storage lives as long as `app`.
void AddBackboneCommands(CLI::App& app, const Globals& g, std::ostream& out, Action* action);
void AddDatasetCommands(CLI::App& app, const Globals& g, std::ostream& out, std::ostream& err, Action* action);
void AddJobCommands(CLI::App& app, const Globals& g, std::ostream& out, std::ostream& err, Action* action);
void AddModelCommands(CLI::App& app, const Globals& g, std::ostream& out, Action* action);
void AddPredictionCommands(CLI::App& app, const Globals& g, std::ostream& out, Action* action);
void AddTokenCommands(CLI::App& app, const Globals& g, std::ostream& out, Action* action);

// `graft datasets show ID`: one dataset, its classes and split.
void PrintDataset(const v1::Dataset& d, std::ostream& out);
// `graft job ID`: one job in full; a search names its winner among the
// backbones it tried and counts its trials.
void PrintJob(const v1::Job& j, std::ostream& out);
// "val", "train" or "all" (the CLI's --split) as the API's split.
v1::DatasetSplit SplitOf(const std::string& split);
// A model's monitoring as `graft models monitor` prints it.
void PrintMonitoring(const v1::Model& m, std::ostream& out);

}  // namespace graft::client
