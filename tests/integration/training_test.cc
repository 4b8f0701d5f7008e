// Datasets, fine-tuning jobs and models through gRPC on 127.0.0.1:0.

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <thread>

#include "client/client.h"
#include <torch/torch.h>

#include "core/data/image_codec.h"
#include "core/data/transforms.h"
#include "core/util/files.h"
#include "core/zoo/mobilenet_v2.h"
#include "core/zoo/state_dict.h"
#include "server/server.h"
#include "tests/integration/training_fixture.h"
#include "tests/testing/archive_writer.h"
#include "tests/testing/local_server.h"
#include "tests/testing/paths.h"
#include "tests/testing/temp_dir.h"

namespace graft::server {
namespace {

namespace fs = std::filesystem;
using graft::testing::ArchiveEntry;


TEST_F(TrainingTest, FineTunesMobileNetOnHymenopteraAndServesTheModel) {
  // The same images as tar.gz and as a folder.
  const std::string tgz = dir_.Join("hymenoptera.tar.gz");
  ASSERT_EQ(std::system(("tar czf " + tgz + " -C " + graft::testing::SharedDir() + "/data hymenoptera").c_str()), 0);
  auto from_tgz = client_->UploadDataset(tgz, "hym-tgz");
  ASSERT_TRUE(from_tgz.ok()) << from_tgz.status();
  const v1::Dataset& d = from_tgz->dataset();
  EXPECT_EQ(d.layout(), v1::DATASET_LAYOUT_TRAIN_VAL);
  ASSERT_EQ(d.classes_size(), 2);
  EXPECT_EQ(d.classes(0).name(), "ants");
  EXPECT_EQ(d.classes(1).name(), "bees");
  EXPECT_GE(d.train_images(), 240);
  EXPECT_GE(d.val_images(), 150);
  EXPECT_EQ(d.train_images() + d.val_images() + from_tgz->rejected_size(), 124 + 121 + 70 + 83);
  bool gif_rejected = false;
  for (const auto& r : from_tgz->rejected()) gif_rejected |= r.reason().find("GIF") != std::string::npos;
  EXPECT_TRUE(gif_rejected);
  const int blobs = BlobCount();

  int progress_calls = 0;
  auto from_folder = client_->UploadDataset(graft::testing::HymenopteraDir(), "hym-folder", 0, 0, [&](const auto&) { ++progress_calls; });
  ASSERT_TRUE(from_folder.ok()) << from_folder.status();
  EXPECT_GT(progress_calls, 0);
  EXPECT_EQ(from_folder->dataset().train_images(), d.train_images());
  EXPECT_EQ(from_folder->dataset().val_images(), d.val_images());
  EXPECT_EQ(from_folder->dataset().classes(0).train(), d.classes(0).train());
  EXPECT_EQ(BlobCount(), blobs) << "identical images are stored once";
  EXPECT_EQ(client_->UploadDataset(graft::testing::HymenopteraDir(), "hym-folder").status().code(), absl::StatusCode::kAlreadyExists);

  // Fine-tune the frozen backbone with a linear head.
  auto job = client_->CreateJob(Spec("hym-tgz", 4));
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(job->epochs_total(), 4);

  // A second client attaches after epoch 2 and gets epochs 1 and 2 replayed first.
  WaitUntil(job->id(), [](const v1::Job& j) { return j.epochs_done() >= 2; });
  client::GraftClient second("127.0.0.1:" + std::to_string(server_->port()),
                                                   graft::testing::AdminClientOptions(dir_.Join("data")));
  std::vector<int> epochs;
  std::vector<v1::JobState> states;
  int64_t last_seq = 0, epoch2_seq = 0;
  bool gapless = true;
  ASSERT_TRUE(second.WatchJob(job->id(), false, [&](const v1::JobEvent& e) {
    gapless &= e.seq() == last_seq + 1;
    last_seq = e.seq();
    if (e.has_epoch() && e.epoch().epoch() == 2) epoch2_seq = e.seq();
    if (e.has_epoch()) epochs.push_back(e.epoch().epoch());
    if (e.has_state()) states.push_back(e.state().state());
    return true;
  }).ok());
  EXPECT_TRUE(gapless);
  EXPECT_EQ(epochs, (std::vector<int>{1, 2, 3, 4}));
  ASSERT_FALSE(states.empty());
  EXPECT_EQ(states.front(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(states.back(), v1::JOB_STATE_SUCCEEDED);
  // A client that lost its stream after epoch 2 resumes from that event's seq
  // and gets exactly the rest.
  std::vector<int64_t> resumed_seqs;
  std::vector<int> resumed_epochs;
  ASSERT_TRUE(second.WatchJob(job->id(), false, [&](const v1::JobEvent& e) {
    resumed_seqs.push_back(e.seq());
    if (e.has_epoch()) resumed_epochs.push_back(e.epoch().epoch());
    return true;
  }, epoch2_seq).ok());
  ASSERT_FALSE(resumed_seqs.empty());
  EXPECT_EQ(resumed_seqs.front(), epoch2_seq + 1);
  EXPECT_EQ(resumed_seqs.back(), last_seq);
  EXPECT_EQ(resumed_epochs, (std::vector<int>{3, 4}));
  const absl::Status negative = second.WatchJob(job->id(), false, [](const v1::JobEvent&) { return true; }, -1);
  EXPECT_EQ(negative.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(negative.message().find("from_seq must be >= 0, got -1"), std::string::npos) << negative;

  const v1::Job done = *client_->GetJob(job->id());
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  EXPECT_GE(done.best().val_accuracy(), 0.93);
  ASSERT_FALSE(done.model_id().empty());
  auto model = client_->GetModel(done.model_id());
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->class_names_size(), 2);
  EXPECT_EQ(model->backbone(), "mobilenet_v2");
  EXPECT_LT(model->bytes(), 100'000) << "head-only: the backbone is shared, not copied";

  // Predict(model) over the validation images agrees with the reported accuracy.
  int correct = 0, total = 0;
  std::vector<int64_t> served_confusion(4, 0);
  std::map<std::string, v1::ClassScore> served_top1;  // by file name
  for (const std::string cls : {"ants", "bees"}) {
    std::vector<std::string> files;
    for (const auto& f : fs::directory_iterator(graft::testing::HymenopteraDir() + "/val/" + cls)) files.push_back(f.path().string());
    std::sort(files.begin(), files.end());
    for (size_t b = 0; b < files.size(); b += 16) {
      v1::PredictRequest r;
      r.add_models(done.model_id());
      r.set_top_k(1);
      std::vector<std::string> batch_files;
      for (size_t i = b; i < std::min(files.size(), b + 16); ++i) {
        const std::string bytes = core::ReadFile(files[i]).value();
        if (bytes.rfind("GIF", 0) == 0) continue;  // rejected at upload
        r.add_images()->set_encoded(bytes);
        batch_files.push_back(files[i]);
      }
      auto p = client_->Predict(r);
      ASSERT_TRUE(p.ok()) << p.status();
      for (const auto& pred : p->results(0).predictions()) {
        served_top1[fs::path(batch_files[static_cast<size_t>(pred.image_index())]).filename().string()] = pred.top(0);
        correct += pred.top(0).label() == cls;
        ++served_confusion[(cls == "bees" ? 2 : 0) + pred.top(0).index()];
        ++total;
      }
    }
  }
  ASSERT_EQ(total, d.val_images());
  const double served = static_cast<double>(correct) / total;
  EXPECT_NEAR(served, model->best_metrics().val_accuracy(), 1.5 / total)
      << "served " << correct << "/" << total << " vs reported " << model->best_metrics().val_accuracy();

  // The report made at the job's end went through the serving path: its
  // confusion matrix is what Predict said image by image.
  ASSERT_TRUE(model->has_report());
  const v1::EvaluationReport& report = model->report();
  EXPECT_EQ(report.model(), done.model_id());
  EXPECT_EQ(report.dataset(), "hym-tgz");
  EXPECT_EQ(report.split(), "val");
  EXPECT_EQ(report.images(), total);
  EXPECT_EQ(std::vector<int64_t>(report.confusion().begin(), report.confusion().end()), served_confusion);
  EXPECT_DOUBLE_EQ(report.accuracy(), served);
  ASSERT_EQ(report.classes_size(), 2);
  EXPECT_EQ(report.classes(1).name(), "bees");
  EXPECT_EQ(report.classes(0).support() + report.classes(1).support(), total);
  EXPECT_EQ(report.reliability_size(), 15);
  EXPECT_EQ(report.highest_loss_size(), 16);
  EXPECT_NE(report.highest_loss(0).file().find("val/"), std::string::npos) << report.highest_loss(0).file();
  // Thumbnails of the hardest images for the HTML report: JPEGs within 128 px.
  for (const auto& hard : report.highest_loss()) {
    const std::string& jpeg = hard.thumbnail();
    ASSERT_EQ(jpeg.rfind("\xff\xd8", 0), 0u) << hard.file() << " has no JPEG thumbnail";
    const cv::Mat thumb = cv::imdecode(std::vector<uchar>(jpeg.begin(), jpeg.end()), cv::IMREAD_COLOR);
    ASSERT_FALSE(thumb.empty()) << hard.file();
    EXPECT_EQ(std::max(thumb.cols, thumb.rows), 128) << hard.file();  // every hymenoptera image is larger
  }
  // The learning curves travel with the model: one entry per epoch, the last
  // the final metrics; the trainer's per-epoch macro F1 is the report's (up to
  // the images the serving path decides differently, as for accuracy).
  ASSERT_EQ(model->history_size(), 4);
  for (int e = 0; e < 4; ++e) {
    EXPECT_EQ(model->history(e).epoch(), e + 1);
    // Head only, nothing augmented: the frozen part ran once, and each epoch says
    // its images/s counts the head's work.
    EXPECT_TRUE(model->history(e).frozen_part_cached()) << e;
  }
  EXPECT_DOUBLE_EQ(model->history(3).val_loss(), model->final_metrics().val_loss());
  if (model->best_metrics().epoch() != 4) {
    EXPECT_EQ(std::vector<int>(model->restored_epochs().begin(), model->restored_epochs().end()),
              std::vector<int>{model->best_metrics().epoch()});
  } else {
    EXPECT_EQ(model->restored_epochs_size(), 0);
  }
  EXPECT_GT(model->best_metrics().val_macro_f1(), 0.9);
  EXPECT_NEAR(model->best_metrics().val_macro_f1(), report.macro_f1(), 3.0 / total);
  auto listed = client_->ListModels();
  ASSERT_TRUE(listed.ok());
  EXPECT_FALSE(listed->models(0).has_report()) << "listings leave the report out";
  EXPECT_EQ(listed->models(0).history_size(), 0) << "and the learning curves";

  // Evaluate on the same images (the folder upload of them) gives the same
  // figures, with progress as it goes; the train part is the train images.
  v1::EvaluateRequest evaluate;
  evaluate.set_model(done.model_id());
  evaluate.set_dataset("hym-folder");
  int64_t last_done = 0;
  bool monotonic = true;
  auto again = client_->Evaluate(evaluate, [&](const v1::EvaluateProgress& p) {
    monotonic &= p.images_done() >= last_done && p.images_total() == total;
    last_done = p.images_done();
  });
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(monotonic);
  EXPECT_EQ(last_done, total);
  EXPECT_EQ(std::vector<int64_t>(again->confusion().begin(), again->confusion().end()), served_confusion);
  EXPECT_DOUBLE_EQ(again->accuracy(), report.accuracy());
  EXPECT_NEAR(again->log_loss(), report.log_loss(), 1e-9);
  EXPECT_NEAR(again->macro_f1(), report.macro_f1(), 1e-12);
  EXPECT_NEAR(again->expected_calibration_error(), report.expected_calibration_error(), 1e-9);
  EXPECT_NEAR(again->highest_loss(0).loss(), report.highest_loss(0).loss(), 1e-9);
  evaluate.set_split(v1::DATASET_SPLIT_TRAIN);
  auto on_train = client_->Evaluate(evaluate);
  ASSERT_TRUE(on_train.ok()) << on_train.status();
  EXPECT_EQ(on_train->images(), d.train_images());
  EXPECT_EQ(on_train->split(), "train");
  EXPECT_GT(on_train->accuracy(), 0.8);
  // PredictDataset over the same images agrees with Predict image by image.
  v1::PredictDatasetRequest listing;
  listing.set_model(done.model_id());
  listing.set_dataset("hym-folder");
  int rows = 0;
  ASSERT_TRUE(client_->PredictDataset(listing, [&](const v1::PredictDatasetResponse& r) -> bool {
    for (const auto& p : r.predictions()) {
      ++rows;
      const std::string name = fs::path(p.file()).filename().string();
      EXPECT_EQ(p.file().rfind("val/" + p.true_label() + "/", 0), 0u) << p.file();
      EXPECT_EQ(p.true_index(), p.true_label() == "bees" ? 1 : 0);
      EXPECT_EQ(p.top_size(), 2);
      if (p.top_size() == 0 || !served_top1.count(name)) {
        ADD_FAILURE() << "no prediction, or no Predict answer, for " << name;
        continue;
      }
      EXPECT_EQ(p.top(0).index(), served_top1[name].index()) << name;
      EXPECT_NEAR(p.top(0).probability(), served_top1[name].probability(), 1e-5) << name;
    }
    EXPECT_EQ(r.images_total(), total);
    return true;
  }).ok());
  EXPECT_EQ(rows, total);

  // What cannot be evaluated says why.
  evaluate.set_dataset("no-such-dataset");
  EXPECT_EQ(client_->Evaluate(evaluate).status().code(), absl::StatusCode::kNotFound);
  const std::string colours = dir_.Join("colours");
  for (const std::string cls : {"ants", "red"}) {
    fs::create_directories(colours + "/" + cls);
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(core::WriteFileAtomic(colours + "/" + cls + "/" + std::to_string(i) + ".png",
                                        graft::testing::EncodeImage("png", 32 + i, 32, 200, 20 * i, 0))
                      .ok());
    }
  }
  ASSERT_TRUE(client_->UploadDataset(colours, "colours").ok());
  evaluate.set_dataset("colours");
  evaluate.set_split(v1::DATASET_SPLIT_ALL);
  const auto unknown = client_->Evaluate(evaluate);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("does not predict: red (its classes: ants, bees)"), std::string::npos)
      << unknown.status();

  // ExportModel: one safetensors file with torchvision names. Reloaded into a
  // fresh graft MobileNetV2 and into torchvision, it predicts what Predict does.
  auto exported = client_->ExportModel(done.model_id());
  ASSERT_TRUE(exported.ok()) << exported.status();
  auto weights = core::ParseSafetensors(*exported, "export");
  ASSERT_TRUE(weights.ok()) << weights.status();
  core::BackbonePtr reloaded = core::MakeMobileNetV2(2);
  ASSERT_TRUE(core::LoadStateDict(*reloaded, *weights).ok());
  reloaded->eval();
  std::vector<torch::Tensor> inputs;
  for (const std::string f : {"/val/ants/10308379_1b6c72e180.jpg", "/val/bees/10870992_eebeeb3a12.jpg",
                              "/val/ants/8124241_36b290d372.jpg"}) {
    inputs.push_back(core::PreprocessImage(*core::DecodeImage(core::ReadFile(graft::testing::HymenopteraDir() + f).value(), {}),
                                           core::Preprocessing{}).value());
  }
  const torch::Tensor batch = torch::stack(inputs);
  v1::PredictRequest by_tensor;
  by_tensor.add_models(done.model_id());
  auto* t = by_tensor.add_images()->mutable_tensor();
  for (int64_t d : batch.sizes()) t->add_shape(d);
  t->mutable_values()->Add(batch.data_ptr<float>(), batch.data_ptr<float>() + batch.numel());
  auto served_probs = client_->Predict(by_tensor);
  ASSERT_TRUE(served_probs.ok()) << served_probs.status();
  torch::Tensor probs = torch::zeros({3, 2});
  for (const auto& pred : served_probs->results(0).predictions()) {
    for (const auto& c : pred.top()) probs[pred.image_index()][c.index()] = c.probability();
  }
  torch::NoGradGuard no_grad;
  const torch::Tensor mine = torch::softmax(reloaded->forward(batch), 1);
  EXPECT_LT((mine - probs).abs().max().item<double>(), 1e-4);
  const std::string export_path = dir_.Join("model.safetensors");
  ASSERT_TRUE(core::WriteFileAtomic(export_path, *exported).ok());
  const std::string io_path = dir_.Join("io.safetensors");
  ASSERT_TRUE(core::WriteFileAtomic(io_path, core::SerializeSafetensors({{"input", batch}, {"probs", probs}}).value()).ok());
  const std::string check = graft::testing::Python() + " " + graft::testing::SourceDir() +
                            "/tests/parity/check_export.py " + export_path + " " + io_path + " mobilenet_v2";
  EXPECT_EQ(std::system(check.c_str()), 0) << "torchvision disagrees with graft on the exported model";

  // Two models of one backbone in one request share its features.
  auto job2 = client_->CreateJob(Spec("hym-folder", 1));
  ASSERT_TRUE(job2.ok());
  const v1::Job done2 = WaitUntil(job2->id(), [](const v1::Job& j) { return j.state() >= v1::JOB_STATE_SUCCEEDED; });
  ASSERT_EQ(done2.state(), v1::JOB_STATE_SUCCEEDED) << done2.error();
  v1::PredictRequest both;
  both.add_models(done.model_id());
  both.add_models(done2.model_id());
  both.add_images()->set_encoded(core::ReadFile(graft::testing::HymenopteraDir() + "/val/bees/10870992_eebeeb3a12.jpg").value());
  auto p = client_->Predict(both);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->results_size(), 2);
  EXPECT_EQ(p->results(0).model(), done.model_id());
  EXPECT_EQ(p->results(1).model(), done2.model_id());
  EXPECT_EQ(p->results(0).predictions(0).top_size(), 2);  // default top_k clamps to the 2 classes

  // Deleting a model leaves the other servable.
  ASSERT_TRUE(client_->DeleteModel(done2.model_id()).ok());
  EXPECT_EQ(client_->GetModel(done2.model_id()).status().code(), absl::StatusCode::kNotFound);
  v1::PredictRequest one;
  one.add_models(done.model_id());
  one.add_images()->set_encoded(core::ReadFile(graft::testing::ImagesDir() + "/dog.jpg").value());
  EXPECT_TRUE(client_->Predict(one).ok());
}

TEST_F(TrainingTest, HeadThenTopBlocksLikeTheInceptionTutorial) {
  ASSERT_TRUE(client_->UploadDataset(graft::testing::HymenopteraDir(), "hym").ok());
  v1::JobSpec spec = Spec("hym", 2);
  spec.set_input_size(112);
  auto* fine = spec.add_stages();  // then the top 2 blocks with SGD lr 1e-4 momentum 0.9
  fine->set_epochs(2);
  fine->set_train("top:2");
  fine->mutable_optimizer()->set_kind(v1::OPTIMIZER_SGD);
  fine->mutable_optimizer()->set_learning_rate(1e-4);
  fine->mutable_optimizer()->set_momentum(0.9);
  spec.mutable_early_stopping()->set_monitor(v1::MONITOR_VAL_ACCURACY);
  auto job = client_->CreateJob(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  const v1::Job done = WaitUntil(job->id(), [](const v1::Job& j) { return j.state() >= v1::JOB_STATE_SUCCEEDED; });
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  EXPECT_EQ(done.epochs_done(), 4);
  EXPECT_EQ(done.last().stage(), 2);
  EXPECT_GE(done.best().val_accuracy(), 0.85);
  auto model = client_->GetModel(done.model_id());
  ASSERT_TRUE(model.ok());
  EXPECT_EQ(std::vector<std::string>(model->trained_blocks().begin(), model->trained_blocks().end()),
            (std::vector<std::string>{"features.17", "features.18"}));
  EXPECT_GT(model->bytes(), 1'000'000) << "the unfrozen blocks are the model's own";
  EXPECT_EQ(model->preprocessing().height(), 112);

  // Served through its own blocks; the export carries them under torchvision names.
  const torch::Tensor x = torch::randn({2, 3, 112, 112});
  v1::PredictRequest r;
  r.add_models(done.model_id());
  auto* t = r.add_images()->mutable_tensor();
  for (int64_t d : x.sizes()) t->add_shape(d);
  t->mutable_values()->Add(x.data_ptr<float>(), x.data_ptr<float>() + x.numel());
  auto served = client_->Predict(r);
  ASSERT_TRUE(served.ok()) << served.status();
  auto exported = client_->ExportModel(done.model_id());
  ASSERT_TRUE(exported.ok());
  core::BackbonePtr reloaded = core::MakeMobileNetV2(2);
  ASSERT_TRUE(core::LoadStateDict(*reloaded, core::ParseSafetensors(*exported, "export").value()).ok());
  reloaded->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor probs = torch::softmax(reloaded->forward(x), 1);
  for (const auto& pred : served->results(0).predictions()) {
    for (const auto& c : pred.top()) {
      EXPECT_NEAR(probs[pred.image_index()][c.index()].item<float>(), c.probability(), 1e-4);
    }
  }
  // The pretrained backbone itself is untouched by fine-tuning.
  auto dog = client_->Predict([&]() {
    v1::PredictRequest p;
    p.set_backbone("mobilenet_v2");
    p.add_images()->set_encoded(core::ReadFile(graft::testing::ImagesDir() + "/dog.jpg").value());
    return p;
  }());
  ASSERT_TRUE(dog.ok());
  EXPECT_EQ(dog->results(0).predictions(0).top(0).index(), 249);
}

// Where a GPU is: weights resident there, the head then the top blocks trained
// under bfloat16 autocast from pinned batches, the model served in float16.
TEST_F(TrainingTest, FineTunesOnCudaWithMixedPrecision) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device on this machine";
  Restart([](ServerOptions& o) {
    o.device = "cuda:0";
    o.mixed_precision = true;
  });
  ASSERT_TRUE(client_->UploadDataset(graft::testing::HymenopteraDir(), "hym").ok());
  v1::JobSpec spec = Spec("hym", 2);
  auto* top = spec.add_stages();
  top->set_epochs(2);
  top->set_train("top:2");
  top->mutable_optimizer()->set_kind(v1::OPTIMIZER_SGD);
  top->mutable_optimizer()->set_learning_rate(1e-3);
  top->mutable_optimizer()->set_momentum(0.9);
  auto job = client_->CreateJob(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  const v1::Job done = WaitUntil(job->id(), [](const v1::Job& j) { return j.state() >= v1::JOB_STATE_SUCCEEDED; });
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  EXPECT_GE(done.best().val_accuracy(), 0.9);
  v1::PredictRequest r;
  r.add_models(done.model_id());
  r.set_top_k(1);
  r.add_images()->set_encoded(core::ReadFile(graft::testing::HymenopteraDir() + "/val/bees/10870992_eebeeb3a12.jpg").value());
  auto p = client_->Predict(r);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->results(0).predictions(0).top(0).label(), "bees");
}

}  // namespace
}  // namespace graft::server
