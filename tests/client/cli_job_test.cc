// What `graft job ID` prints for a search: its winner among the backbones it
// tried and its trials, not "backbone: search" and "epochs: 0 / 25".
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "client/cli_commands.h"
#include "client/client.h"

namespace graft::client {
namespace {

v1::Job FinishedSearch(int stages) {
  v1::Job j;
  j.set_id("job-1");
  j.set_state(v1::JOB_STATE_SUCCEEDED);
  j.set_model_id("model-1");
  j.mutable_spec()->set_dataset("hym");
  j.mutable_spec()->mutable_search()->add_backbones("mobilenet_v2");
  j.mutable_spec()->mutable_search()->add_backbones("squeezenet1_1");
  for (int s = 0; s < stages; ++s) j.mutable_spec()->add_stages()->set_epochs(s == 0 ? 25 : 5);
  j.set_epochs_total(stages == 1 ? 25 : 30);
  j.mutable_search()->set_trials_planned(12);
  j.mutable_search()->set_trials_done(12);
  j.mutable_search()->add_leaderboard()->set_backbone("squeezenet1_1");
  j.mutable_search()->add_leaderboard()->set_backbone("mobilenet_v2");
  return j;
}

TEST(PrintJob, ASearchNamesItsWinnerAndCountsTrialsNotEpochs) {
  std::ostringstream out;
  PrintJob(FinishedSearch(1), out);
  const std::string text = out.str();
  EXPECT_NE(text.find("backbone: squeezenet1_1 (search over mobilenet_v2, squeezenet1_1)\n"), std::string::npos) << text;
  EXPECT_NE(text.find("trials:   12 / 12\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("epochs:"), std::string::npos) << text;

  // With a fine-tuning stage after the search, its epochs are shown too.
  std::ostringstream staged;
  PrintJob(FinishedSearch(2), staged);
  EXPECT_NE(staged.str().find("epochs:   0 / 30\n"), std::string::npos) << staged.str();
}

// `graft retrain` refuses a promotion missing its holdout (or the reverse)
// before it calls the server: nothing listens at the address it is given.
TEST(Retrain, PromoteAndHoldoutGoTogether) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--promote", "prod"}, std::vector<std::string>{"--holdout", "bees"}}) {
    CLI::App app;
    Globals g;
    std::ostringstream out, err;
    Action action;
    AddRetrainCommand(app, g, out, err, &action);
    std::vector<std::string> argv = {"graft", "retrain", "ants-vs-bees@prod"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<const char*> c_argv;
    for (const auto& a : argv) c_argv.push_back(a.c_str());
    app.parse(static_cast<int>(c_argv.size()), c_argv.data());
    ASSERT_TRUE(action);
    GraftClient client("127.0.0.1:1");
    const absl::Status status = action(client);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_EQ(status.message(), "--promote ALIAS and --holdout DATASET go together") << status;
  }
}

}  // namespace
}  // namespace graft::client
