// Early stopping's monitor, as a job reports it: the job's best epoch, the
// weights restored and the model's best metrics all follow the metric named.

#include <algorithm>

#include "tests/integration/training_fixture.h"

namespace graft::server {
namespace {

TEST_F(TrainingTest, AMacroF1MonitorPicksTheEpochOfHighestMacroF1) {
  ASSERT_TRUE(client_->UploadDataset(graft::testing::HymenopteraDir(), "hym").ok());
  v1::JobSpec spec = Spec("hym", 4);
  spec.set_input_size(112);
  // A high rate, so that the epochs differ.
  spec.mutable_stages(0)->mutable_optimizer()->set_learning_rate(3e-2);
  spec.mutable_early_stopping()->set_monitor(v1::MONITOR_VAL_MACRO_F1);
  auto job = client_->CreateJob(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  const v1::Job done = WaitUntil(job->id(), [](const v1::Job& j) { return j.state() >= v1::JOB_STATE_SUCCEEDED; });
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  auto model = client_->GetModel(done.model_id());
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_EQ(model->history_size(), 4);
  // The first epoch of highest macro F1 (a tie keeps the earlier, as Keras does).
  int best = 0;
  for (int e = 1; e < 4; ++e) {
    if (model->history(e).val_macro_f1() > model->history(best).val_macro_f1()) best = e;
  }
  const auto& want = model->history(best);
  EXPECT_EQ(done.best().epoch(), want.epoch());
  EXPECT_DOUBLE_EQ(done.best().val_macro_f1(), want.val_macro_f1());
  EXPECT_EQ(model->best_metrics().epoch(), want.epoch());
  // What the test saw, for the log.
  std::cout << "macro F1 by epoch:";
  for (const auto& h : model->history()) std::cout << " " << h.val_macro_f1() << " (loss " << h.val_loss() << ")";
  std::cout << "; best epoch " << done.best().epoch() << "\n";
}

}  // namespace
}  // namespace graft::server
