// graftd in-process on 127.0.0.1:0 with the real client library.

#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <opencv2/imgcodecs.hpp>

#include <chrono>
#include <future>
#include <random>
#include <thread>

#include "client/client.h"
#include "core/data/image_codec.h"
#include "core/data/transforms.h"
#include "core/util/files.h"
#include "core/zoo/registry.h"
#include "graft/v1/backbones.grpc.pb.h"
#include "graft/v1/inference.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "server/server.h"
#include "tests/testing/local_server.h"
#include "tests/testing/http_get.h"
#include "tests/testing/http_server.h"
#include "tests/testing/paths.h"
#include "tests/testing/temp_dir.h"

namespace graft::server {
namespace {

using graft::testing::ImagesDir;

std::string Short(const std::string& label) { return label.substr(0, label.find(',')); }

class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_dir_ = new graft::testing::TempDir();
    ServerOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.metrics_port = 0;
    options.data_dir = data_dir_->path();
    options.zoo_dir = graft::testing::WeightsDir();
    options.device = "cpu";
    options.max_image_pixels = 40'000'000;
    auto server = GraftServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = server->release();
    client_ = new client::GraftClient("127.0.0.1:" + std::to_string(server_->port()),
                                      graft::testing::AdminClientOptions(data_dir_->path()));
  }
  static std::string Token() { return graft::testing::AdminClientOptions(data_dir_->path()).token; }
  static void TearDownTestSuite() {
    delete client_;
    delete server_;
    delete data_dir_;
  }

  static std::string Bytes(const std::string& image) {
    auto b = core::ReadFile(ImagesDir() + "/" + image);
    EXPECT_TRUE(b.ok());
    return b.value_or("");
  }
  static v1::PredictRequest Request(const std::string& backbone, std::vector<std::string> encoded) {
    v1::PredictRequest r;
    r.set_backbone(backbone);
    for (auto& e : encoded) r.add_images()->set_encoded(std::move(e));
    return r;
  }
  static void ExpectInvalid(const v1::PredictRequest& r, const std::string& fragment) {
    const auto result = client_->Predict(r);
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << result.status();
    EXPECT_NE(result.status().message().find(fragment), std::string::npos)
        << "'" << result.status().message() << "' lacks '" << fragment << "'";
  }

  static graft::testing::TempDir* data_dir_;
  static GraftServer* server_;
  static client::GraftClient* client_;
};

graft::testing::TempDir* ServerTest::data_dir_ = nullptr;
GraftServer* ServerTest::server_ = nullptr;
client::GraftClient* ServerTest::client_ = nullptr;

TEST_F(ServerTest, HealthIsServing) {
  const auto h = client_->Health();
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->status(), ::grpc::health::v1::HealthCheckResponse::SERVING);

  // A probe that watches and then hangs up is counted CANCELLED, not UNKNOWN.
  auto stub = ::grpc::health::v1::Health::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  auto watch = stub->Watch(&ctx, ::grpc::health::v1::HealthCheckRequest());
  ::grpc::health::v1::HealthCheckResponse first;
  ASSERT_TRUE(watch->Read(&first));
  EXPECT_EQ(first.status(), ::grpc::health::v1::HealthCheckResponse::SERVING);
  ctx.TryCancel();
  EXPECT_EQ(watch->Finish().error_code(), grpc::StatusCode::CANCELLED);
  std::string page;
  for (int i = 0; i < 50; ++i) {
    page = graft::testing::HttpGet(server_->metrics_port(), "/metrics");
    if (page.find("method=\"grpc.health.v1.Health/Watch\"") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_NE(page.find("graft_rpc_requests_total{code=\"CANCELLED\",method=\"grpc.health.v1.Health/Watch\"} 1"),
            std::string::npos)
      << page;
  EXPECT_EQ(page.find("code=\"UNKNOWN\",method=\"grpc.health.v1.Health/Watch\""), std::string::npos) << page;
}

TEST_F(ServerTest, ListsBackbonesWithMetadataAndResidency) {
  const auto r = client_->ListBackbones();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->backbones_size(), static_cast<int>(core::Registry::BuiltIn().specs().size()));
  bool vgg16 = false;
  for (const auto& b : r->backbones()) {
    if (b.name() != "vgg16") continue;
    vgg16 = true;
    EXPECT_EQ(b.parameter_count(), 138357544);
    EXPECT_EQ(std::vector<std::string>(b.aliases().begin(), b.aliases().end()), std::vector<std::string>{"VGG16"});
    EXPECT_EQ(b.weights().file_name(), "vgg16-397923af.pth");
    EXPECT_FALSE(b.weights().present());
  }
  EXPECT_TRUE(vgg16) << "vgg16 is not listed";
  // Every Keras Applications name the full-zoo issue lists resolves.
  for (const std::string keras :
       {"VGG16", "VGG19", "ResNet50", "ResNet101", "ResNet152", "InceptionV3", "DenseNet121", "DenseNet169",
        "DenseNet201", "MobileNetV2", "MobileNetV3Small", "MobileNetV3Large", "EfficientNetB0", "EfficientNetB7",
        "EfficientNetV2S", "EfficientNetV2M", "EfficientNetV2L", "ConvNeXtTiny", "ConvNeXtLarge", "Xception",
        "InceptionResNetV2"}) {
    bool found = false;
    for (const auto& b : r->backbones()) {
      for (const auto& a : b.aliases()) found = found || a == keras;
    }
    EXPECT_TRUE(found) << keras << " is not an alias of any listed backbone";
  }
  const auto xception = client_->GetBackbone("Xception");
  ASSERT_TRUE(xception.ok()) << xception.status();
  EXPECT_EQ(xception->parameter_count(), 22910480);
  EXPECT_EQ(xception->preprocessing().height(), 299);
  // A backbone without weights still tells its blocks (built on demand).
  const auto dense = client_->GetBackbone("DenseNet121");
  ASSERT_TRUE(dense.ok()) << dense.status();
  EXPECT_EQ(dense->name(), "densenet121");

  // The listing comes in pages like every other: 10 at a time, the same backbones in the same order.
  auto stub = v1::Backbones::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()), grpc::InsecureChannelCredentials()));
  v1::ListBackbonesRequest page_request;
  page_request.set_page_size(10);
  std::vector<std::string> paged;
  int pages = 0;
  do {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + Token());
    v1::ListBackbonesResponse page;
    ASSERT_TRUE(stub->ListBackbones(&ctx, page_request, &page).ok());
    EXPECT_LE(page.backbones_size(), 10);
    for (const auto& b : page.backbones()) paged.push_back(b.name());
    page_request.set_page_token(page.next_page_token());
    ++pages;
  } while (!page_request.page_token().empty() && pages < 100);
  std::vector<std::string> all;
  for (const auto& b : r->backbones()) all.push_back(b.name());
  EXPECT_EQ(paged, all);
  EXPECT_EQ(pages, (r->backbones_size() + 9) / 10);
  grpc::ClientContext bad_ctx;
  bad_ctx.AddMetadata("authorization", "Bearer " + Token());
  page_request.set_page_token("x");
  v1::ListBackbonesResponse ignored;
  const grpc::Status bad = stub->ListBackbones(&bad_ctx, page_request, &ignored);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(bad.error_message().find("page_token: 'x' is not a token this listing gave"), std::string::npos);
  EXPECT_EQ(dense->feature_dim(), 1024);
  EXPECT_EQ(dense->blocks_size(), 1 + 58 + 3 + 1);
  EXPECT_EQ(dense->blocks(0), "stem");
  EXPECT_EQ(dense->blocks(dense->blocks_size() - 1), "norm5");
  // Resident from its first use on (graftd loads backbones lazily).
  const auto cold = client_->GetBackbone("MobileNetV2");
  ASSERT_TRUE(cold.ok()) << cold.status();
  EXPECT_TRUE(cold->weights().present());
  EXPECT_EQ(cold->residency().device(), "");
  ASSERT_TRUE(client_->Predict(Request("mobilenet_v2", {Bytes("dog.jpg")})).ok());
  const auto b = client_->GetBackbone("MobileNetV2");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->name(), "mobilenet_v2");
  EXPECT_EQ(b->family(), "mobilenet_v2");
  EXPECT_EQ(b->parameter_count(), 3504872);
  EXPECT_EQ(b->feature_dim(), 1280);
  EXPECT_EQ(b->preprocessing().height(), 224);
  EXPECT_FLOAT_EQ(b->preprocessing().mean(0), 0.485f);
  EXPECT_EQ(b->blocks_size(), 19);
  EXPECT_TRUE(b->weights().present());
  EXPECT_EQ(b->residency().device(), "cpu");
  EXPECT_GT(b->residency().bytes(), 14'000'000);
  const auto r50 = client_->GetBackbone("ResNet50");
  ASSERT_TRUE(r50.ok());
  EXPECT_FALSE(r50->weights().present());
  EXPECT_EQ(r50->weights().file_name(), "resnet50-0676ba61.pth");
  EXPECT_EQ(client_->GetBackbone("alexnet9000").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ServerTest, PredictsAMalamuteWithTiming) {
  const auto r = client_->Predict(Request("mobilenet_v2", {Bytes("dog.jpg")}));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->results_size(), 1);
  const auto& p = r->results(0).predictions(0);
  ASSERT_EQ(p.top_size(), 5);  // default top_k
  EXPECT_EQ(Short(p.top(0).label()), "malamute");
  EXPECT_EQ(p.top(0).index(), 249);
  EXPECT_GT(p.top(0).probability(), p.top(1).probability());
  EXPECT_GT(r->timing().compute_us(), 0);
  EXPECT_GT(r->timing().decode_us(), 0);
  EXPECT_GE(r->timing().total_us(), r->timing().compute_us());
}

TEST_F(ServerTest, RawTensorGivesTheSameAnswerAsEncodedBytes) {
  const auto image = core::DecodeImage(Bytes("eagle.jpg"), {});
  ASSERT_TRUE(image.ok());
  const auto tensor = core::PreprocessImage(*image, core::Preprocessing{});
  ASSERT_TRUE(tensor.ok());
  v1::PredictRequest r;
  r.set_backbone("mobilenet_v2");
  r.set_top_k(3);
  auto* t = r.add_images()->mutable_tensor();
  for (int64_t d : {1, 3, 224, 224}) t->add_shape(d);
  const torch::Tensor c = tensor->contiguous();
  t->mutable_values()->Add(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  r.add_images()->set_encoded(Bytes("eagle.jpg"));
  const auto out = client_->Predict(r);
  ASSERT_TRUE(out.ok()) << out.status();
  const auto& preds = out->results(0).predictions();
  ASSERT_EQ(preds.size(), 2);
  EXPECT_EQ(Short(preds[0].top(0).label()), "kite");  // the bird, as torchvision has it
  EXPECT_EQ(preds[0].top(0).index(), preds[1].top(0).index());
  EXPECT_NEAR(preds[0].top(0).probability(), preds[1].top(0).probability(), 1e-4);

  // The same tensor as raw little-endian float32 bytes answers the same.
  v1::PredictRequest raw;
  raw.set_backbone("mobilenet_v2");
  raw.set_top_k(3);
  auto* rt = raw.add_images()->mutable_tensor();
  for (int64_t d : {1, 3, 224, 224}) rt->add_shape(d);
  rt->set_raw_values(std::string(reinterpret_cast<const char*>(c.data_ptr<float>()), c.numel() * sizeof(float)));
  const auto from_raw = client_->Predict(raw);
  ASSERT_TRUE(from_raw.ok()) << from_raw.status();
  EXPECT_EQ(from_raw->results(0).predictions(0).top(0).index(), preds[0].top(0).index());
  // Within float rounding: the two requests may be batched differently.
  EXPECT_NEAR(from_raw->results(0).predictions(0).top(0).probability(), preds[0].top(0).probability(), 1e-5);
  // A byte count that is not the shape's, or both forms at once, is refused by name.
  rt->mutable_raw_values()->pop_back();
  auto bad = client_->Predict(raw);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("image 0: tensor raw_values has 602111 bytes but its shape holds 150528 "
                                        "float32 values (602112 bytes)"),
            std::string::npos)
      << bad.status();
  rt->set_raw_values(std::string(12, '\0'));
  rt->clear_shape();
  rt->add_shape(3);
  rt->add_values(1.0f);
  bad = client_->Predict(raw);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("both values and raw_values"), std::string::npos) << bad.status();
}

TEST_F(ServerTest, EmbedReturnsOneVectorPerImage) {
  v1::EmbedRequest r;
  r.set_backbone("squeezenet1_1");
  r.add_images()->set_encoded(Bytes("dog.jpg"));
  r.add_images()->set_encoded(Bytes("horses.jpg"));
  const auto out = client_->Embed(r);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->dim(), 512);
  ASSERT_EQ(out->embeddings_size(), 2);
  EXPECT_EQ(out->embeddings(1).values_size(), 512);
  EXPECT_EQ(out->embeddings(1).image_index(), 1);
}

TEST_F(ServerTest, RejectsBadImagesWithoutCrashing) {
  ExpectInvalid(Request("mobilenet_v2", {"plain text, not an image"}), "image 0: not an image");
  ExpectInvalid(Request("mobilenet_v2", {Bytes("dog.jpg"), ""}), "image 1: empty image bytes");
  const std::string dog = Bytes("dog.jpg");
  ExpectInvalid(Request("mobilenet_v2", {dog.substr(0, dog.size() / 3)}), "truncated JPEG");
  // A PNG whose header claims 20000 x 20000 = 400 megapixels, over the 40 MP cap.
  cv::Mat tiny(1, 1, CV_8UC3);
  std::vector<uchar> png;
  cv::imencode(".png", tiny, png);
  std::string huge(png.begin(), png.end());
  const char dims[8] = {0, 0, 0x4e, 0x20, 0, 0, 0x4e, 0x20};
  huge.replace(16, 8, dims, 8);
  ExpectInvalid(Request("mobilenet_v2", {huge}), "exceeds the limit of 40000000 pixels");
  // The server still answers after all of that.
  EXPECT_TRUE(client_->Predict(Request("mobilenet_v2", {dog})).ok());
}

TEST_F(ServerTest, RejectsBadTensorsAndTopK) {
  v1::PredictRequest r;
  r.set_backbone("mobilenet_v2");
  auto* t = r.add_images()->mutable_tensor();
  for (int64_t d : {1, 3, 32, 32}) t->add_shape(d);
  t->mutable_values()->Resize(3 * 32 * 32, 0.f);
  ExpectInvalid(r, "tensor shape [1, 3, 32, 32] is not [3, 224, 224]");
  t->mutable_values()->Resize(5, 0.f);
  ExpectInvalid(r, "tensor has 5 values but its shape holds 3072");

  v1::PredictRequest k = Request("mobilenet_v2", {Bytes("dog.jpg")});
  k.set_top_k(0);
  ExpectInvalid(k, "top_k must be between 1 and 1000, got 0");
  k.set_top_k(1001);
  ExpectInvalid(k, "top_k must be between 1 and 1000, got 1001");
  k.set_top_k(1000);
  EXPECT_TRUE(client_->Predict(k).ok());
}

TEST_F(ServerTest, UnknownAndWeightlessBackbones) {
  const auto unknown = client_->Predict(Request("inception_v9", {Bytes("dog.jpg")}));
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(unknown.status().message().find("unknown backbone 'inception_v9'"), std::string::npos);
  const auto missing = client_->Predict(Request("resnet18", {Bytes("dog.jpg")}));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(missing.status().message().find("no ImageNet weights"), std::string::npos);
  // An empty name is an unknown backbone, as every other empty id is unknown (not INVALID_ARGUMENT).
  const auto empty = client_->GetBackbone("");
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(empty.status().message().find("unknown backbone ''"), std::string::npos) << empty.status();
}

// Collects a PullBackbone stream: the messages and the final status.
std::pair<std::vector<v1::PullBackboneProgress>, grpc::Status> Pull(int port, const std::string& name,
                                                                    const std::string& token) {
  auto stub = v1::Backbones::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + token);
  v1::PullBackboneRequest request;
  request.set_name(name);
  auto reader = stub->PullBackbone(&ctx, request);
  std::vector<v1::PullBackboneProgress> messages;
  for (v1::PullBackboneProgress p; reader->Read(&p);) messages.push_back(p);
  return {messages, reader->Finish()};
}

TEST_F(ServerTest, PullBackboneIsOffOfflineAndAnswersResidentOnesAtOnce) {
  const auto [off, off_status] = Pull(server_->port(), "resnet18", Token());
  EXPECT_EQ(off_status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(off_status.error_message().find("--offline"), std::string::npos) << off_status.error_message();
  EXPECT_NE(off_status.error_message().find("resnet18-f37072fd.pth"), std::string::npos);
  const auto [present, present_status] = Pull(server_->port(), "MobileNetV2", Token());
  ASSERT_TRUE(present_status.ok()) << present_status.error_message();
  ASSERT_EQ(present.size(), 1u);
  EXPECT_TRUE(present[0].verified());
  EXPECT_TRUE(present[0].backbone().weights().present());
  EXPECT_EQ(Pull(server_->port(), "nope", Token()).second.error_code(), grpc::StatusCode::NOT_FOUND);
  // Keras-only backbones have no official file: the answer says where to put one.
  const auto [keras, keras_status] = Pull(server_->port(), "Xception", Token());
  EXPECT_EQ(keras_status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(keras_status.error_message().find("xception-imagenet.safetensors"), std::string::npos)
      << keras_status.error_message();
}

TEST(PullBackbone, ACorruptedDownloadIsRefusedAndLeavesTheZooAsItWas) {
  graft::testing::TempDir data;
  graft::testing::HttpServer mirror;
  std::string corrupted(4096, 'x');
  mirror.Serve("/models/resnet18-f37072fd.pth", corrupted);
  ServerOptions options = graft::testing::LocalServerOptions(data.path());
  options.zoo_dir.clear();  // <data_dir>/zoo, empty
  options.offline = false;
  options.weights_base_url = mirror.Url("/models/");
  auto server = GraftServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  const auto [messages, status] = Pull((*server)->port(), "ResNet18", graft::testing::AdminClientOptions(data.path()).token);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS) << status.error_message();
  EXPECT_NE(status.error_message().find("does not start with f37072fd"), std::string::npos) << status.error_message();
  EXPECT_TRUE(std::filesystem::is_empty((*server)->zoo_dir())) << "a refused download was left in the zoo";
  // Nothing changed: resnet18 is still weightless, and the server still serves.
  client::GraftClient client("127.0.0.1:" + std::to_string((*server)->port()),
                             graft::testing::AdminClientOptions(data.path()));
  const auto r18 = client.GetBackbone("resnet18");
  ASSERT_TRUE(r18.ok()) << r18.status();
  EXPECT_FALSE(r18->weights().present());
  // A mirror that does not have the file: UNAVAILABLE naming the address.
  const auto [none, none_status] = Pull((*server)->port(), "resnet34", graft::testing::AdminClientOptions(data.path()).token);
  EXPECT_EQ(none_status.error_code(), grpc::StatusCode::UNAVAILABLE) << none_status.error_message();
  EXPECT_NE(none_status.error_message().find("resnet34-b627a593.pth"), std::string::npos);
}

TEST_F(ServerTest, MetricsPageCountsRpcsAndImages) {
  ASSERT_TRUE(client_->Predict(Request("squeezenet1_1", {Bytes("dog.jpg"), Bytes("kite.jpg")})).ok());
  (void)client_->Predict(Request("nope", {Bytes("dog.jpg")}));
  const std::string page = graft::testing::HttpGet(server_->metrics_port(), "/metrics");
  ASSERT_NE(page.find("200 OK"), std::string::npos) << page;
  EXPECT_NE(page.find("graft_rpc_requests_total{code=\"OK\",method=\"graft.v1.Inference/Predict\"}"), std::string::npos);
  EXPECT_NE(page.find("graft_rpc_requests_total{code=\"NOT_FOUND\",method=\"graft.v1.Inference/Predict\"} "),
            std::string::npos);
  EXPECT_NE(page.find("graft_rpc_latency_seconds_bucket{code=\"OK\",method=\"graft.v1.Inference/Predict\""),
            std::string::npos);
  EXPECT_NE(page.find("graft_images_predicted_total{backbone=\"squeezenet1_1\",precision=\"fp32\"} 2"), std::string::npos) << page;
  // The backbone it loaded, and no other (lazy residency).
  EXPECT_NE(page.find("graft_backbone_resident_bytes{backbone=\"squeezenet1_1\",device=\"cpu\"}"), std::string::npos);
  EXPECT_NE(page.find("graft_backbone_load_seconds{backbone=\"squeezenet1_1\"}"), std::string::npos);
  EXPECT_NE(page.find("graft_backbone_load_duration_seconds_count{backbone=\"squeezenet1_1\"} 1"), std::string::npos);
  EXPECT_EQ(page.find("graft_backbone_resident_bytes{backbone=\"mobilenet_v2\""), std::string::npos);
  EXPECT_NE(page.find("graft_device_memory_bytes{device=\"cpu\",kind=\"backbones\"}"), std::string::npos) << page;
  // The LibTorch it runs on and its CUDA: this CPU machine's LibTorch has none.
  const std::string cuda = torch::cuda::is_available() ? "true" : "false";
  EXPECT_NE(page.find("cuda_available=\"" + cuda + "\""), std::string::npos) << page;
  EXPECT_NE(page.find("torch_version=\"" + std::string(TORCH_VERSION) + "\""), std::string::npos) << page;
  EXPECT_NE(graft::testing::HttpGet(server_->metrics_port(), "/other").find("404"), std::string::npos);
}

TEST_F(ServerTest, ConcurrentPredictsAreBatchedAndEachGetsItsOwnAnswer) {
  const std::vector<std::string> names{"dog.jpg", "eagle.jpg", "giraffe.jpg", "horses.jpg", "kite.jpg", "person.jpg"};
  // Each image alone first: the answers to match.
  std::map<std::string, v1::ClassScore> expected;
  for (const auto& n : names) {
    const auto r = client_->Predict(Request("mobilenet_v2", {Bytes(n)}));
    ASSERT_TRUE(r.ok()) << r.status();
    expected[n] = r->results(0).predictions(0).top(0);
  }
  // Eight clients, each sending every image once in its own order.
  std::vector<std::future<std::string>> clients;
  std::atomic<int> shared_batches{0};
  for (int c = 0; c < 8; ++c) {
    clients.push_back(std::async(std::launch::async, [&, c]() -> std::string {
      std::vector<std::string> order = names;
      std::shuffle(order.begin(), order.end(), std::mt19937(static_cast<unsigned>(c)));
      for (const auto& n : order) {
        const auto r = client_->Predict(Request("mobilenet_v2", {Bytes(n)}));
        if (!r.ok()) return n + ": " + std::string(r.status().message());
        const auto& top = r->results(0).predictions(0).top(0);
        if (top.index() != expected[n].index() || std::abs(top.probability() - expected[n].probability()) > 1e-4) {
          return n + " got " + top.label() + " " + std::to_string(top.probability()) + ", alone it is " +
                 expected[n].label() + " " + std::to_string(expected[n].probability());
        }
        if (r->timing().batch_images() > 1) ++shared_batches;
      }
      return "";
    }));
  }
  for (auto& c : clients) EXPECT_EQ(c.get(), "");
  EXPECT_GT(shared_batches.load(), 0) << "no request shared a forward pass with another";
  const std::string page = graft::testing::HttpGet(server_->metrics_port(), "/metrics");
  EXPECT_NE(page.find("graft_inference_batch_images_bucket{backbone=\"mobilenet_v2\",precision=\"fp32\""), std::string::npos) << page;
  EXPECT_NE(page.find("graft_inference_batch_requests_count{backbone=\"mobilenet_v2\",precision=\"fp32\"}"), std::string::npos);
  EXPECT_NE(page.find("graft_inference_queue_images{backbone=\"mobilenet_v2\"}"), std::string::npos);
}

TEST_F(ServerTest, AClientGivingUpMidQueueLeavesTheOthersServed) {
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()), grpc::InsecureChannelCredentials());
  auto stub = v1::Inference::NewStub(channel);
  ASSERT_TRUE(client_->Predict(Request("mobilenet_v2", {Bytes("dog.jpg")})).ok());  // resident before the queue forms
  // A large request of ready tensors (nothing to decode) keeps the backbone
  // busy for a second or more ...
  const auto kite = core::PreprocessImage(core::DecodeImage(Bytes("kite.jpg"), {}).value(), core::Preprocessing{});
  ASSERT_TRUE(kite.ok());
  v1::PredictRequest many;
  many.set_backbone("mobilenet_v2");
  auto* t = many.add_images()->mutable_tensor();
  for (int64_t d : {48, 3, 224, 224}) t->add_shape(d);
  const torch::Tensor c = kite->unsqueeze(0).expand({48, 3, 224, 224}).contiguous();
  t->mutable_values()->Add(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  auto busy = std::async(std::launch::async, [&] { return client_->Predict(many); });
  // Computing once the backbone has two users: the request's hold and its
  // batch's. (One user is not enough: the request holds the backbone while
  // it still checks its 48 tensors, and an impatient client sent then was
  // queued first and served within its 50 ms: CI saw that on a loaded
  // machine.)
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (client_->GetBackbone("mobilenet_v2")->residency().users() < 2 &&
         std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polls a condition
  }
  ASSERT_GE(client_->GetBackbone("mobilenet_v2")->residency().users(), 2)
      << "the large request's batch never started computing";
  // ... while impatient clients queue behind it and leave.
  for (int i = 0; i < 4; ++i) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + Token());
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(50));
    v1::PredictResponse response;
    const grpc::Status status = stub->Predict(&context, Request("mobilenet_v2", {Bytes("dog.jpg")}), &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  }
  const auto big = busy.get();
  ASSERT_TRUE(big.ok()) << big.status();
  ASSERT_EQ(big->results(0).predictions_size(), 48);
  const auto alone = client_->Predict(Request("mobilenet_v2", {Bytes("kite.jpg")}));
  ASSERT_TRUE(alone.ok()) << alone.status();
  EXPECT_EQ(big->results(0).predictions(47).top(0).label(), alone->results(0).predictions(0).top(0).label());
  const auto after = client_->Predict(Request("mobilenet_v2", {Bytes("dog.jpg")}));
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(Short(after->results(0).predictions(0).top(0).label()), "malamute");
}

}  // namespace
}  // namespace graft::server
