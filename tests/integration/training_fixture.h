// The fixture of the training, model-name and evaluation tests: a graftd
// in-process on 127.0.0.1:0 with an admin client, restartable on the same data.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "client/client.h"
#include "server/server.h"
#include "tests/testing/local_server.h"
#include "tests/testing/paths.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/hymenoptera.h"

namespace graft::server {


class TrainingTest : public ::testing::Test {
 protected:
  void SetUp() override { Restart([](ServerOptions&) {}); }

  void Restart(const std::function<void(ServerOptions&)>& adjust) {
    client_.reset();
    server_.reset();
    ServerOptions options = graft::testing::LocalServerOptions(dir_.Join("data"));
    adjust(options);
    auto server = GraftServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    client_ = std::make_unique<client::GraftClient>("127.0.0.1:" + std::to_string(server_->port()),
                                                   graft::testing::AdminClientOptions(dir_.Join("data")));
  }

  v1::JobSpec Spec(const std::string& dataset, int epochs) {
    v1::JobSpec spec;
    spec.set_backbone("mobilenet_v2");
    spec.set_dataset(dataset);
    spec.set_seed(1);
    auto* stage = spec.add_stages();
    stage->set_epochs(epochs);
    stage->set_train("head");
    stage->mutable_optimizer()->set_kind(v1::OPTIMIZER_ADAM);
    stage->mutable_optimizer()->set_learning_rate(1e-3);
    return spec;
  }

  v1::Job WaitUntil(const std::string& id, const std::function<bool(const v1::Job&)>& done, int seconds = 600) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (std::chrono::steady_clock::now() < deadline) {
      auto job = client_->GetJob(id);
      EXPECT_TRUE(job.ok()) << job.status();
      if (!job.ok() || done(*job)) return job.value_or(v1::Job());
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "job " << id << " did not get there in time";
    return v1::Job();
  }

  // Runs the job to its end; the model it published (empty, with a test
  // failure, when it did not succeed).
  std::string TrainModel(const v1::JobSpec& spec) {
    auto job = client_->CreateJob(spec);
    EXPECT_TRUE(job.ok()) << job.status();
    if (!job.ok()) return "";
    const v1::Job done = WaitUntil(job->id(), [](const v1::Job& j) { return j.state() >= v1::JOB_STATE_SUCCEEDED; });
    EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
    return done.model_id();
  }

  // A client of a new principal `name` with `role` (its token made by the admin).
  std::unique_ptr<client::GraftClient> ClientAs(const std::string& name, v1::Role role) {
    auto token = client_->CreateToken(name, role);
    EXPECT_TRUE(token.ok()) << token.status();
    client::ClientOptions options;
    options.token = token.ok() ? token->token() : "";
    return std::make_unique<client::GraftClient>("127.0.0.1:" + std::to_string(server_->port()), options);
  }

  int BlobCount() {
    int n = 0;
    std::error_code ec;
    namespace fs = std::filesystem;
    for (auto it = fs::recursive_directory_iterator(dir_.Join("data/datasets/blobs"), ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      n += it->is_regular_file() ? 1 : 0;
    }
    return n;
  }

  graft::testing::TempDir dir_;
  std::unique_ptr<GraftServer> server_;
  std::unique_ptr<client::GraftClient> client_;
};

}  // namespace graft::server
