// Everything a client can make graftd hold is bounded and refused naming its
// flag: decode memory, request size, archives, uploads, jobs, listings, metric
// labels, slow connections.

#include <filesystem>

#include "tests/integration/security_fixture.h"
#include "core/util/limit_error.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "server/status_util.h"

namespace graft::security_testing {
namespace {

TEST_F(SecurityTest, LongListsComeInPages) {
  const std::string archive = TinyDataset(dir_.path());
  for (const char* name : {"a", "b", "c"}) ASSERT_TRUE(admin_->UploadDataset(archive, name).ok());
  auto stub = v1::Datasets::NewStub(grpc::CreateChannel(Target(), grpc::InsecureChannelCredentials()));
  const auto list = [&](int size, const std::string& token, v1::ListDatasetsResponse* out) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + admin_token_);
    v1::ListDatasetsRequest request;
    request.set_page_size(size);
    request.set_page_token(token);
    return stub->ListDatasets(&ctx, request, out);
  };
  v1::ListDatasetsResponse first, second, bad;
  ASSERT_TRUE(list(2, "", &first).ok());
  ASSERT_EQ(first.datasets_size(), 2);
  ASSERT_FALSE(first.next_page_token().empty());
  ASSERT_TRUE(list(2, first.next_page_token(), &second).ok());
  ASSERT_EQ(second.datasets_size(), 1);
  EXPECT_EQ(second.datasets(0).name(), "c");
  EXPECT_TRUE(second.next_page_token().empty());
  const grpc::Status refused = list(2, "not-a-token", &bad);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(refused.error_message().find("page_token"), std::string::npos);
  // The client library follows the pages.
  EXPECT_EQ(admin_->ListDatasets()->datasets_size(), 3);
}

TEST_F(SecurityTest, UploadsAreHeldToTheirDeclaredSizeAndAnswerBoundedLists) {
  // total_bytes says 10; the client sends a megabyte.
  v1::UploadHeader liar;
  liar.set_name("liar");
  liar.set_total_bytes(10);
  const grpc::Status status = RawUpload(liar, std::string(1 << 20, 'x'));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("header.total_bytes declared"), std::string::npos) << status.error_message();
  // 1,500 files with 600-character names beside a good dataset: each is
  // rejected, the answer lists 1,000 and counts all.
  std::vector<testing::ArchiveEntry> entries;
  for (int i = 0; i < 6; ++i) {
    entries.push_back({"train/red/" + std::to_string(i) + ".png", testing::EncodeImage("png", 32, 32, i, 10, 230), ""});
    entries.push_back({"train/blue/" + std::to_string(i) + ".png", testing::EncodeImage("png", 32, 32, 230, 10, i), ""});
  }
  const std::string junk = testing::EncodeImage("png", 8, 8, 1, 1, 1);
  for (int i = 0; i < 1500; ++i) entries.push_back({"train/red/" + std::string(600, 'n') + std::to_string(i), junk, ""});
  ASSERT_TRUE(testing::WriteArchive(dir_.Join("long.tar.gz"), "tar.gz", entries));
  auto uploaded = admin_->UploadDataset(dir_.Join("long.tar.gz"), "long");
  ASSERT_TRUE(uploaded.ok()) << uploaded.status();
  EXPECT_EQ(uploaded->rejected_size(), 1000);
  EXPECT_EQ(uploaded->dataset().rejected_count(), 1500);
  EXPECT_NE(uploaded->rejected(0).reason().find("path longer than 512"), std::string::npos)
      << uploaded->rejected(0).reason();
  EXPECT_LE(uploaded->rejected(0).path().size(), 260u);
}

TEST_F(SecurityTest, UnknownEnumValuesAndAMismatchedUploadFormatAreRefusedByField) {
  v1::JobSpec spec;
  spec.set_backbone("squeezenet1_1");
  spec.set_dataset("whatever");
  auto* stage = spec.add_stages();
  stage->set_epochs(1);
  stage->mutable_optimizer()->set_kind(static_cast<v1::OptimizerKind>(99));
  auto job = admin_->CreateJob(spec);
  EXPECT_EQ(job.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(job.status().message().find("spec.stages[0].optimizer.kind: unknown value 99"), std::string::npos)
      << job.status();

  // A tar.gz declared as a zip.
  v1::UploadHeader header;
  header.set_name("mislabelled");
  header.set_format(v1::UPLOAD_FORMAT_ZIP);
  const grpc::Status status = RawUpload(header, core::ReadFile(TinyDataset(dir_.path())).value());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("header.format: declared UPLOAD_FORMAT_ZIP but the data is a gzip stream"),
            std::string::npos)
      << status.error_message();
  EXPECT_EQ(admin_->ListDatasets()->datasets_size(), 0);
}

TEST_F(SecurityTest, BytesThatAreNotTheRequestMessageAreTheClientsErrorNotGraftds) {
  auto channel = grpc::CreateChannel(Target(), grpc::InsecureChannelCredentials());
  // A varint that never ends, and a length-delimited field longer than the message.
  for (const std::string& junk : {std::string(16, '\xff'), std::string("\x0a\x7f", 2)}) {
    for (const std::string method : {"graft.v1.Inference/Predict", "graft.v1.Training/WatchJob"}) {
      const grpc::Status s = RawCall(channel, method, admin_token_, junk);
      EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << method << ": " << s.error_message();
      EXPECT_NE(s.error_message().find("not a valid message of " + method + "'s request type"), std::string::npos)
          << s.error_message();
    }
  }
  const std::string page = testing::HttpGet(server_->metrics_port(), "/metrics");
  EXPECT_NE(page.find("graft_rpc_requests_total{code=\"INVALID_ARGUMENT\",method=\"graft.v1.Inference/Predict\"} 2"),
            std::string::npos)
      << page;
  EXPECT_EQ(page.find("code=\"INTERNAL\""), std::string::npos) << "a client's junk counted as graftd's error";
}

TEST_F(SecurityTest, UnknownMethodsDoNotGrowTheMetrics) {
  auto channel = grpc::CreateChannel(Target(), grpc::InsecureChannelCredentials());
  for (int i = 0; i < 300; ++i) {
    const grpc::Status s = RawCall(channel, "graft.v1.Nope/Method" + std::to_string(i), admin_token_);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  }
  const std::string page = testing::HttpGet(server_->metrics_port(), "/metrics");
  EXPECT_EQ(page.find("Nope"), std::string::npos);
  EXPECT_LT(page.size(), 200'000u);
}

TEST_F(SecurityTest, SpecBombsAndQueueFloodsAreRefusedWithTheirEstimate) {
  ASSERT_TRUE(admin_->UploadDataset(TinyDataset(dir_.path()), "colours").ok());
  v1::JobSpec bomb;
  bomb.set_backbone("squeezenet1_1");
  bomb.set_dataset("colours");
  for (int i = 0; i < 16; ++i) bomb.mutable_head()->add_hidden_units(65536);
  bomb.set_batch_size(4096);
  bomb.set_input_size(1024);
  auto* stage = bomb.add_stages();
  stage->set_epochs(10000);
  stage->set_train("all");
  auto refused = admin_->CreateJob(bomb);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("trainable parameters"), std::string::npos) << refused.status();
  EXPECT_NE(refused.status().message().find("--max_job_memory_bytes"), std::string::npos) << refused.status();
  // So is a batch of 4096 at 1024 px with every block trained, whatever the head.
  bomb.mutable_head()->clear_hidden_units();
  auto activations = admin_->CreateJob(bomb);
  EXPECT_EQ(activations.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(activations.status().message().find("MiB of activations at batch 4096"), std::string::npos)
      << activations.status();
  EXPECT_EQ(admin_->ListJobs()->jobs_size(), 0);

  // A principal floods the queue with long jobs: four wait, the fifth is refused.
  v1::JobSpec longjob;
  longjob.set_backbone("squeezenet1_1");
  longjob.set_dataset("colours");
  longjob.add_stages()->set_epochs(10000);
  client::GraftClient flood(Target(), WithToken(NewToken("flood", v1::ROLE_TRAIN)));
  ASSERT_TRUE(flood.UploadDataset(TinyDataset(dir_.path()), "colours").ok());
  absl::Status last;
  int accepted = 0;
  for (int i = 0; i < 8 && last.ok(); ++i) {
    auto job = flood.CreateJob(longjob);
    last = job.status();
    if (job.ok()) ++accepted;
  }
  EXPECT_EQ(last.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(last.message().find("--max_queued_jobs_per_principal"), std::string::npos) << last;
  EXPECT_LE(accepted, 5);  // four queued and at most one running
  // Another principal still gets a place in the queue.
  EXPECT_TRUE(admin_->CreateJob(longjob).ok());
  auto all = admin_->ListJobs();
  ASSERT_TRUE(all.ok());
  for (const auto& j : all->jobs()) (void)admin_->CancelJob(j.id());
}

// A client that opens connections to /metrics and sends its request a byte
// at a time, never finishing.
int SlowConnection(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return -1;
  const char partial[] = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ";
  (void)::send(fd, partial, sizeof(partial) - 1, MSG_NOSIGNAL);
  return fd;
}

TEST_F(SecurityTest, SlowClientsDoNotDelayAScrape) {
  std::vector<int> slow;
  for (int i = 0; i < 4; ++i) slow.push_back(SlowConnection(server_->metrics_port()));
  std::atomic<bool> stop{false};
  std::thread drip([&] {
    while (!stop) {
      for (int fd : slow) (void)::send(fd, "a", 1, MSG_NOSIGNAL);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
  for (int i = 0; i < 3; ++i) {
    const auto start = std::chrono::steady_clock::now();
    const std::string page = testing::HttpGet(server_->metrics_port(), "/metrics");
    const auto took = std::chrono::steady_clock::now() - start;
    EXPECT_NE(page.find("graft_build_info"), std::string::npos);
    EXPECT_LT(took, std::chrono::milliseconds(500));
  }
  stop = true;
  drip.join();
  for (int fd : slow) ::close(fd);
}

TEST_F(SecurityTest, TooManyImagesInOneRequestAreRefusedNamingTheFlag) {
  v1::PredictRequest request;
  request.set_backbone("squeezenet1_1");
  const std::string png = testing::EncodeImage("png", 8, 8, 1, 2, 3);
  for (int i = 0; i < 65; ++i) request.add_images()->set_encoded(png);
  auto refused = admin_->Predict(request);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("--max_images_per_request"), std::string::npos) << refused.status();
  // For programs: the flag as a google.rpc.ErrorInfo in the status details.
  auto stub = v1::Inference::NewStub(grpc::CreateChannel(Target(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + admin_token_);
  v1::PredictResponse response;
  const grpc::Status raw = stub->Predict(&ctx, request, &response);
  ASSERT_EQ(raw.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  google::rpc::Status details;
  ASSERT_TRUE(details.ParseFromString(raw.error_details())) << "no status details";
  EXPECT_EQ(details.code(), static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
  ASSERT_EQ(details.details_size(), 1);
  google::rpc::ErrorInfo info;
  ASSERT_TRUE(details.details(0).UnpackTo(&info));
  EXPECT_EQ(info.reason(), "LIMIT_EXCEEDED");
  EXPECT_EQ(info.domain(), "graft");
  EXPECT_EQ(info.metadata().at("flag"), "max_images_per_request");
  // An image over --max_image_pixels, refused inside the batcher with the
  // image's index before the message: its flag survives the rephrasing.
  v1::PredictRequest big;
  big.set_backbone("squeezenet1_1");
  big.add_images()->set_encoded(testing::EncodeImage("png", 8000, 6000, 1, 2, 3));
  grpc::ClientContext ctx2;
  ctx2.AddMetadata("authorization", "Bearer " + admin_token_);
  const grpc::Status too_big = stub->Predict(&ctx2, big, &response);
  EXPECT_EQ(too_big.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << too_big.error_message();
  EXPECT_EQ(server::LimitFlagOf(too_big), "max_image_pixels") << too_big.error_message();
  // Metrics count hits from the flag each refusal carries, not its text.
  const std::string page = testing::HttpGet(server_->metrics_port(), "/metrics");
  EXPECT_NE(page.find("graft_limit_hits_total{flag=\"max_images_per_request\"} 2"), std::string::npos) << page;
  EXPECT_NE(page.find("graft_limit_hits_total{flag=\"max_image_pixels\"} 1"), std::string::npos) << page;
}

TEST(StatusTest, LimitErrorsCarryTheirFlagAndMessagesAreCapped) {
  const absl::Status s = core::LimitError(absl::StatusCode::kResourceExhausted, "too many", "max_widgets");
  EXPECT_EQ(s.message(), "too many (--max_widgets)");
  EXPECT_EQ(core::LimitFlagOf(s), "max_widgets");
  const absl::Status named = core::LimitError(absl::StatusCode::kInvalidArgument, "over --max_widgets (3)", "max_widgets");
  EXPECT_EQ(named.message(), "over --max_widgets (3)") << "a message naming its flag is kept as it is";
  const absl::Status rephrased = core::Rephrased(absl::StatusCode::kInvalidArgument, "image 2: too many", s);
  EXPECT_EQ(core::LimitFlagOf(rephrased), "max_widgets");
  EXPECT_EQ(core::LimitFlagOf(absl::InvalidArgumentError("plain")), "");
  EXPECT_EQ(server::LimitFlagOf(server::ToGrpcStatus(rephrased)), "max_widgets");
  EXPECT_EQ(server::LimitFlagOf(server::ToGrpcStatus(absl::NotFoundError("x"))), "");
  const std::string long_message = std::string(3000, 'a') + "\xc3\xa9";
  const grpc::Status capped = server::ToGrpcStatus(absl::InvalidArgumentError(long_message));
  EXPECT_LE(capped.error_message().size(), server::kMaxErrorMessageBytes);
  EXPECT_NE(capped.error_message().find("(message cut)"), std::string::npos);
}

int64_t StatusKb(const std::string& key) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key, 0) == 0) return std::stoll(line.substr(key.size()));
  }
  return -1;
}

double CpuSeconds() {
  struct rusage u {};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// Decoding on the callers' threads: every concurrent request decodes at once
// unless the budget holds them back.
class DecodeBombTest : public SecurityTest {
 protected:
  void Customize(ServerOptions& options) override {
    options.decode_on = "callers";
    options.max_decode_bytes = 600LL << 20;
  }
  // A 36-megapixel PNG of one colour: a few hundred KB that decode to 108 MB.
  static std::string Bomb() {
    std::vector<uchar> buf;
    cv::imencode(".png", cv::Mat(6000, 6000, CV_8UC3, cv::Scalar(0, 128, 255)), buf);
    return std::string(buf.begin(), buf.end());
  }
};

TEST_F(DecodeBombTest, ConcurrentDecodeBombsStayInsideTheBudget) {
  const std::string bomb = Bomb();
  ASSERT_LT(bomb.size(), 2u << 20);
  std::ofstream("/proc/self/clear_refs") << "5";  // restart the peak (VmHWM) from here
  const int64_t before_kb = StatusKb("VmRSS:");
  std::vector<absl::Status> results(16);
  std::vector<std::thread> clients;
  for (size_t i = 0; i < results.size(); ++i) {
    clients.emplace_back([&, i] {
      client::GraftClient c(Target(), WithToken(admin_token_));
      v1::PredictRequest request;
      request.set_backbone("squeezenet1_1");
      request.add_images()->set_encoded(bomb);
      results[i] = c.Predict(request).status();
    });
  }
  for (auto& t : clients) t.join();
  const int64_t peak_growth_mb = (StatusKb("VmHWM:") - before_kb) / 1024;
  int served = 0, refused = 0;
  for (const absl::Status& r : results) {
    if (r.ok()) ++served;
    if (absl::IsResourceExhausted(r)) {
      ++refused;
      EXPECT_NE(r.message().find("--max_decode_bytes"), std::string::npos) << r;
    }
    if (!r.ok() && !absl::IsResourceExhausted(r)) ADD_FAILURE() << r;
  }
  EXPECT_GT(served, 0);
  EXPECT_GT(refused, 0);
  EXPECT_EQ(served + refused, 16);
  // Unbounded, 16 decodes of 2 x 108 MB each would have held ~3.4 GB at once.
  EXPECT_LT(peak_growth_mb, 1000) << served << " served, " << refused << " refused";
  std::cout << "decode bombs: " << served << " served, " << refused << " refused, peak RSS growth " << peak_growth_mb
            << " MB\n";

  // Three of them in one request hold too many pixels for one request.
  v1::PredictRequest three;
  three.set_backbone("squeezenet1_1");
  for (int i = 0; i < 3; ++i) three.add_images()->set_encoded(bomb);
  auto refused_whole = admin_->Predict(three);
  EXPECT_EQ(refused_whole.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused_whole.status().message().find("--max_request_pixels"), std::string::npos) << refused_whole.status();
}

class ArchiveBombTest : public SecurityTest {
 protected:
  void Customize(ServerOptions& options) override { options.max_dataset_bytes = 1LL << 40; }
};

TEST_F(ArchiveBombTest, ACancelledArchiveBombStopsConsumingCpu) {
  // 40 entries of 1 GiB of zeros each, ~41 MB compressed: minutes of inflating.
  const std::string bomb = dir_.Join("bomb.tar.gz");
  ASSERT_EQ(std::system((testing::Python() + " " + testing::SourceDir() + "/tests/integration/make_archive_bomb.py " +
                         bomb + " 40 1").c_str()),
            0);
  v1::UploadHeader header;
  header.set_name("bomb");
  double cpu_sent = 0, cpu_cancel = 0;
  // graftd inflates; the client gives up after 1.5 s.
  const grpc::Status status = RawUpload(header, core::ReadFile(bomb).value(), [&](grpc::ClientContext* ctx) {
    cpu_sent = CpuSeconds();
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    cpu_cancel = CpuSeconds();
    ctx->TryCancel();
  });
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const double cpu_settled = CpuSeconds();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const double cpu_after = CpuSeconds();
  EXPECT_GT(cpu_cancel - cpu_sent, 0.5) << "graftd was not inflating the archive";
  EXPECT_LT(cpu_after - cpu_settled, 0.2) << "graftd kept inflating after the client left";
  EXPECT_EQ(admin_->ListDatasets()->datasets_size(), 0);
  EXPECT_EQ(testing::CountFiles(dir_.Join("data") + "/datasets/staging"), 0);
}

class SlowArchiveTest : public SecurityTest {
 protected:
  void Customize(ServerOptions& options) override {
    options.max_dataset_bytes = 1LL << 40;
    options.max_archive_seconds = 1;
  }
};

TEST_F(SlowArchiveTest, AnArchiveThatTakesTooLongToReadIsRefusedNamingTheFlag) {
  // 8 entries of 1 GiB of zeros each (~8 MB): many seconds of inflating.
  const std::string bomb = dir_.Join("slow.tar.gz");
  ASSERT_EQ(std::system((testing::Python() + " " + testing::SourceDir() + "/tests/integration/make_archive_bomb.py " +
                         bomb + " 8 1").c_str()),
            0);
  v1::UploadHeader header;
  header.set_name("slow");
  const auto started = std::chrono::steady_clock::now();
  const grpc::Status status = RawUpload(header, core::ReadFile(bomb).value());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  EXPECT_NE(status.error_message().find("--max_archive_seconds"), std::string::npos) << status.error_message();
  EXPECT_LT(seconds, 10) << "the walk went on past its deadline";
  EXPECT_EQ(admin_->ListDatasets()->datasets_size(), 0);
  EXPECT_EQ(testing::CountFiles(dir_.Join("data") + "/datasets/staging"), 0);
}

// Serving options out of range are refused at start, naming the flag.
TEST(ServerOptionsTest, BadServingOptionsAreRefusedByName) {
  graft::testing::TempDir data;
  graft::server::ServerOptions options = graft::testing::LocalServerOptions(data.path());
  options.idle_rpc_threads = 0;
  auto server = graft::server::GraftServer::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(server.status().message().find("--idle_rpc_threads"), std::string::npos) << server.status();
  options.idle_rpc_threads = 4;
  options.max_batch_size = 0;
  server = graft::server::GraftServer::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_NE(server.status().message().find("--max_batch_size"), std::string::npos) << server.status();
  options.max_batch_size = 32;
  options.decode_on = "sometimes";
  server = graft::server::GraftServer::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().message(), "--decode_on must be auto, batcher or callers, got 'sometimes'");
}

// Every range check runs before graftd creates anything: a refused start
// leaves the data directory as it was.
TEST(ServerOptionsTest, ARefusedStartCreatesNothing) {
  graft::testing::TempDir data;
  const std::string dir = data.Join("graft");
  graft::server::ServerOptions options = graft::testing::LocalServerOptions(dir);
  options.job_heartbeat_s = 2;
  options.job_takeover_s = 3;
  auto server = graft::server::GraftServer::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(server.status().message().find("--job_takeover_s must be at least twice --job_heartbeat_s"),
            std::string::npos)
      << server.status();
  options.job_takeover_s = 15;
  options.max_http_body_budget_bytes = options.max_message_bytes - 1;
  server = graft::server::GraftServer::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_NE(server.status().message().find("--max_http_body_budget_bytes"), std::string::npos) << server.status();
  EXPECT_FALSE(std::filesystem::exists(dir)) << "a refused start created " << dir;
}

}  // namespace
}  // namespace graft::security_testing
