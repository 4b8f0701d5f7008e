// One principal's stalled or slow calls hold its own share of a slot kind,
// never every slot, and an upload that stops sending is cancelled after
// --upload_idle_timeout_s so its slot comes back; an answer the client stops
// reading is cancelled after --stream_write_timeout_s.

#include "tests/integration/security_fixture.h"
#include "tests/testing/http_get.h"

#include <grpcpp/support/channel_arguments.h>

#include <thread>

namespace graft::security_testing {
namespace {

class FairnessTest : public SecurityTest {
 protected:
  void Customize(ServerOptions& options) override {
    options.max_concurrent_uploads = 3;
    options.max_uploads_per_principal = 1;
    options.upload_idle_timeout_s = 2;
  }

  // An upload that sends its header and then nothing, holding its stream open.
  struct StalledUpload {
    std::unique_ptr<v1::Datasets::Stub> stub;
    grpc::ClientContext ctx;
    v1::UploadDatasetResponse response;
    std::unique_ptr<grpc::ClientWriter<v1::UploadDatasetRequest>> writer;
  };
  std::unique_ptr<StalledUpload> Stall(const std::string& token, const std::string& name) {
    auto up = std::make_unique<StalledUpload>();
    up->stub = v1::Datasets::NewStub(grpc::CreateChannel(Target(), grpc::InsecureChannelCredentials()));
    up->ctx.AddMetadata("authorization", "Bearer " + token);
    up->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    up->writer = up->stub->UploadDataset(&up->ctx, &up->response);
    v1::UploadDatasetRequest first;
    first.mutable_header()->set_name(name);
    first.mutable_header()->set_format(v1::UPLOAD_FORMAT_TAR_GZ);
    EXPECT_TRUE(up->writer->Write(first));
    return up;
  }

  // graftd answers an upload by `token` whose header names no valid dataset:
  // INVALID_ARGUMENT when it got a slot, RESOURCE_EXHAUSTED when it did not.
  grpc::Status Probe(const std::string& token) {
    auto stub = v1::Datasets::NewStub(grpc::CreateChannel(Target(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + token);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    v1::UploadDatasetResponse response;
    auto writer = stub->UploadDataset(&ctx, &response);
    v1::UploadDatasetRequest first;
    first.mutable_header()->set_name("not a valid name/");
    writer->Write(first);
    writer->WritesDone();
    return writer->Finish();
  }
};

TEST_F(FairnessTest, AStalledUploaderHoldsOnlyItsShareAndIsCancelledWhenIdle) {
  const std::string alice = NewToken("alice", v1::ROLE_TRAIN);
  const std::string bob = NewToken("bob", v1::ROLE_TRAIN);
  const std::string archive = TinyDataset(dir_.path());
  const auto started = std::chrono::steady_clock::now();
  auto stalled = Stall(alice, "stalled");

  // Once graftd holds alice's stalled upload, her next one is refused naming
  // her share (probes until graftd holds it: up to 1.5 s, well before the
  // 2 s idle timeout frees it; 100 quick probes were not always enough on a
  // loaded machine)...
  grpc::Status second = Probe(alice);
  while (second.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED &&
         std::chrono::steady_clock::now() - started < std::chrono::milliseconds(1500)) {
    ASSERT_EQ(second.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << second.error_message();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    second = Probe(alice);
  }
  ASSERT_EQ(second.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(second.error_message().find("--max_uploads_per_principal"), std::string::npos) << second.error_message();
  // ... while bob uploads as if she were not there.
  client::GraftClient bob_client(Target(), WithToken(bob));
  auto his = bob_client.UploadDataset(archive, "colours");
  ASSERT_TRUE(his.ok()) << his.status();

  // The stalled upload is cancelled after --upload_idle_timeout_s, nothing of
  // it is kept, and alice's slot is hers again.
  const grpc::Status ended = stalled->writer->Finish();
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::CANCELLED) << ended.error_message();
  EXPECT_GE(waited, 1.5);
  EXPECT_LT(waited, 30) << "the idle upload was not cancelled by graftd";
  // The handler ends a moment after the client is told.
  grpc::Status freed = Probe(alice);
  for (int i = 0; i < 100 && freed.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    freed = Probe(alice);
  }
  EXPECT_EQ(freed.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << freed.error_message();
  client::GraftClient alice_client(Target(), WithToken(alice));
  auto hers = alice_client.UploadDataset(archive, "colours");
  ASSERT_TRUE(hers.ok()) << hers.status();
  auto listed = admin_->ListDatasets();
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->datasets_size(), 2);
  EXPECT_EQ(testing::CountFiles(dir_.Join("data") + "/datasets/staging"), 0);

  // Operators see both: the refusal and the cancel. (graftd, whose flags the
  // metrics know, also counts them in graft_limit_hits_total{flag}.)
  const std::string page = testing::HttpGet(server_->metrics_port(), "/metrics");
  EXPECT_NE(page.find("graft_rpc_requests_total{code=\"CANCELLED\",method=\"graft.v1.Datasets/UploadDataset\"} 1"),
            std::string::npos)
      << page;
  EXPECT_NE(page.find("graft_rpc_requests_total{code=\"RESOURCE_EXHAUSTED\",method=\"graft.v1.Datasets/UploadDataset\"}"),
            std::string::npos);
}

class StreamDeadlineTest : public SecurityTest {
 protected:
  void Customize(ServerOptions& options) override { options.stream_write_timeout_s = 2; }
};

TEST_F(StreamDeadlineTest, AnExportTheClientStopsReadingIsCancelledAndItsReaderGetsAllOfIt) {
  // A model of squeezenet1_1: its export is the whole network, ~3 MB.
  const std::string alice = NewToken("alice", v1::ROLE_TRAIN);
  client::GraftClient hers(Target(), WithToken(alice));
  auto uploaded = hers.UploadDataset(TinyDataset(dir_.path()), "colours");
  ASSERT_TRUE(uploaded.ok()) << uploaded.status();
  v1::JobSpec spec;
  spec.set_backbone("squeezenet1_1");
  spec.set_dataset("colours");
  spec.add_stages()->set_epochs(1);
  auto job = hers.CreateJob(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_TRUE(hers.WatchJob(job->id(), false, [](const v1::JobEvent&) { return true; }).ok());
  auto done = hers.GetJob(job->id());
  ASSERT_TRUE(done.ok());
  ASSERT_EQ(done->state(), v1::JOB_STATE_SUCCEEDED) << done->error();

  // A client that asks for the export and reads nothing: no window growth, so
  // graftd's writes stop at the stream's 64 KiB flow-control window.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  auto channel = grpc::CreateCustomChannel(Target(), grpc::InsecureChannelCredentials(), args);
  auto stub = v1::Models::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + alice);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  v1::ExportModelRequest request;
  request.set_id(done->model_id());
  const auto started = std::chrono::steady_clock::now();
  auto reader = stub->ExportModel(&ctx, request);
  reader->WaitForInitialMetadata();
  std::this_thread::sleep_for(std::chrono::seconds(5));  // past the 2 s write deadline

  // The call was cancelled: at most what came before the stall is read.
  int64_t got = 0;
  v1::ExportModelChunk chunk;
  while (reader->Read(&chunk)) got += static_cast<int64_t>(chunk.data().size());
  const grpc::Status ended = reader->Finish();
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::CANCELLED) << ended.error_message();
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(), 30);

  // A client that reads gets all of it, and operators see the cancel.
  auto exported = hers.ExportModel(done->model_id());
  ASSERT_TRUE(exported.ok()) << exported.status();
  EXPECT_GT(exported->size(), 1u << 20);
  EXPECT_LT(got, static_cast<int64_t>(exported->size())) << "the stalled client got the whole export";
  const std::string page = testing::HttpGet(server_->metrics_port(), "/metrics");
  EXPECT_NE(page.find("graft_rpc_requests_total{code=\"CANCELLED\",method=\"graft.v1.Models/ExportModel\"} 1"),
            std::string::npos)
      << page;
}

}  // namespace
}  // namespace graft::security_testing
