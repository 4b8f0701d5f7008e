#pragma once

// How the CLI shows searches and learning-rate range tests.

#include <string>

#include "absl/status/status.h"
#include "graft/v1/training.pb.h"

namespace graft::client {

// One row per trial: its configuration and its best epoch.
std::string TrialHeader();
std::string TrialRow(const v1::Trial& t);
// The leaderboard, best first (the first `top` rows; 0: all), with a header.
std::string LeaderboardTable(const v1::SearchProgress& search, int top = 0);
// The smoothed loss against the learning rate (log scale), `height` rows of
// `width` columns, the suggestion marked with '|'.
std::string LrPlot(const v1::LearningRateCurve& curve, int width = 64, int height = 14);
// A JSON job spec may say "learning_rate": "auto" in a stage's optimizer:
// rewritten to auto_learning_rate: true (the proto field) before parsing.
absl::Status ExpandAutoLearningRate(std::string& json_text);

}  // namespace graft::client
