// int8 trunks (core/zoo/int8.h): the graph a family lowers to computes what
// the folded module computes; quantized with a calibration, the real
// MobileNetV2 names every photo of ../shared/images as float32 does.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "core/data/image_codec.h"
#include "core/data/transforms.h"
#include "core/util/files.h"
#include "core/zoo/int8.h"
#include "core/zoo/registry.h"
#include "core/zoo/zoo.h"
#include "tests/testing/paths.h"

namespace graft::core {
namespace {

// A backbone with non-trivial batch norms, folded (as FoldTest makes them).
BackbonePtr FoldedRandom(const std::string& name) {
  const BackboneSpec* spec = Registry::BuiltIn().Find(name);
  EXPECT_NE(spec, nullptr);
  torch::manual_seed(11);
  BackbonePtr m = spec->make();
  torch::NoGradGuard no_grad;
  for (auto& module : m->modules()) {
    auto buffers = module->named_buffers(/*recurse=*/false);
    if (!buffers.contains("running_var")) continue;
    buffers["running_mean"].normal_(0, 0.2);
    buffers["running_var"].uniform_(0.5, 1.5);
  }
  m->FoldBatchNorm();
  return m;
}

class Int8GraphTest : public ::testing::TestWithParam<std::string> {};

TEST_P(Int8GraphTest, FloatGraphComputesWhatTheFoldedTrunkComputes) {
  BackbonePtr m = FoldedRandom(GetParam());
  auto graph = LowerTrunk(*m, GetParam());
  ASSERT_TRUE(graph.ok()) << graph.status();
  ASSERT_EQ((*graph)->blocks(), m->blocks().size());
  torch::NoGradGuard no_grad;
  const torch::Tensor x = torch::randn({2, 3, 96, 96});
  for (const size_t end : {m->blocks().size() / 2, m->blocks().size()}) {
    const torch::Tensor expected = m->ForwardTrunk(x, 0, end);
    std::vector<std::pair<float, float>> ranges((*graph)->values(), {1e9f, -1e9f});
    const torch::Tensor got = (*graph)->RunFloat(x, 0, end, &ranges);
    EXPECT_LE((got - expected).abs().max().item<double>(), 1e-4 * expected.abs().max().item<double>()) << end;
    // Every value the blocks computed has a range that holds the output's.
    EXPECT_LE(ranges[0].first, x.min().item<float>());
    EXPECT_GE(ranges[0].second, x.max().item<float>());
  }
}

INSTANTIATE_TEST_SUITE_P(Families, Int8GraphTest,
                         ::testing::Values("resnet18", "resnet50", "resnext50_32x4d", "mobilenet_v2", "vgg11_bn",
                                           "alexnet", "squeezenet1_0", "squeezenet1_1"),
                         [](const auto& info) { return info.param; });

TEST(Int8Graph, FamiliesWithoutAnInt8FormAreNamed) {
  BackbonePtr m = FoldedRandom("densenet121");
  auto graph = LowerTrunk(*m, "densenet121");
  ASSERT_FALSE(graph.ok());
  EXPECT_EQ(graph.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(graph.status().message().find("backbone 'densenet121' has no int8 form"), std::string::npos)
      << graph.status();
}

TEST(Int8Graph, CalibrationOfAnotherGraphIsRefused) {
  BackbonePtr m = FoldedRandom("resnet18");
  auto graph = LowerTrunk(*m, "resnet18");
  ASSERT_TRUE(graph.ok());
  Int8Calibration c;
  c.ranges.assign((*graph)->values() - 1, {0.0f, 1.0f});
  const absl::Status s = (*graph)->Quantize(c);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("calibrate again"), std::string::npos) << s;
}

TEST(Int8Calibration, JsonRoundTripKeepsTheFingerprint) {
  Int8Calibration c;
  c.ranges = {{-1.5f, 2.25f}, {0.0f, 6.0f}};
  c.images = 256;
  c.dataset = "hym";
  c.split = "train";
  auto back = Int8CalibrationFromJson(nlohmann::json::parse(Int8CalibrationToJson(c).dump()));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->Fingerprint(), c.Fingerprint());
  EXPECT_EQ(back->images, 256);
  EXPECT_EQ(back->dataset, "hym");
  Int8Calibration other = c;
  other.ranges[1].second = 5.0f;
  EXPECT_NE(other.Fingerprint(), c.Fingerprint());
  // A stored range that is not one is data loss, not a crash later.
  auto bad = Int8CalibrationFromJson(nlohmann::json::parse(R"({"images": 1, "ranges": [[2.0, 1.0]]})"));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss);
}

class Int8Precision : public ::testing::TestWithParam<std::string> {};

TEST_P(Int8Precision, RealWeightsNameEveryPhotoAsFloat32Does) {
  ZooOptions options;
  options.zoo_dir = testing::WeightsDir();
  options.device = "cpu";
  auto zoo = Zoo::Create(options);
  ASSERT_TRUE(zoo.ok()) << zoo.status();
  auto resident = (*zoo)->AwaitResident(GetParam(), {});
  ASSERT_TRUE(resident.ok()) << resident.status();
  ResidentBackbone& bb = **resident;
  std::vector<torch::Tensor> photos;
  for (const char* name : {"dog.jpg", "eagle.jpg", "giraffe.jpg", "horses.jpg", "kite.jpg", "person.jpg"}) {
    auto bytes = ReadFile(testing::ImagesDir() + "/" + name);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    auto rgb = DecodeImage(*bytes, {});
    ASSERT_TRUE(rgb.ok()) << rgb.status();
    auto t = PreprocessImage(*rgb, bb.spec->preprocessing);
    ASSERT_TRUE(t.ok()) << t.status();
    photos.push_back(*t);
  }
  const torch::Tensor x = torch::stack(photos);
  // Calibrated on the photos and their mirror images, as an operator passes
  // photos of the kind the backbone will see.
  auto calibration = (*zoo)->CalibrateInt8(bb, {x, x.flip(3)});
  ASSERT_TRUE(calibration.ok()) << calibration.status();
  EXPECT_EQ(calibration->images, 12);
  auto trunk = (*zoo)->Trunk(bb, Precision::kInt8, &*calibration);
  ASSERT_TRUE(trunk.ok()) << trunk.status();
  // The same calibration gets the same trunk; the ledger holds its bytes.
  EXPECT_EQ(*(*zoo)->Trunk(bb, Precision::kInt8, &*calibration), *trunk);
  // The int8 weights twice (packed, and plain to pack again): half of float32's bytes.
  // (float32's bytes include the ImageNet classifier).
  EXPECT_LT((*trunk)->StateBytes(), bb.inference->StateBytes() / 2);
  EXPECT_GT((*trunk)->StateBytes(), bb.inference->StateBytes() / 5);

  c10::InferenceMode guard;
  const torch::Tensor fp32 = torch::softmax(bb.inference->forward(x.contiguous(torch::MemoryFormat::ChannelsLast)), 1);
  const torch::Tensor q = (*trunk)->ForwardTrunk(x);
  ASSERT_TRUE(q.is_quantized());
  const torch::Tensor int8 = torch::softmax(bb.inference->ForwardHead(q.dequantize()), 1);
  EXPECT_TRUE(torch::equal(fp32.argmax(1), int8.argmax(1))) << std::get<1>(fp32.topk(2, 1)) << int8.argmax(1);
  const double diff = (fp32 - int8).abs().max().item<double>();
  std::cout << GetParam() << " int8 vs fp32, 6 photos: max |dp| " << diff << "\n";
  // MobileNetV2 measured 0.0995 on LibTorch 1.13 (min/max ranges: 0.17;
  // PyTorch FX on onednn: 0.104) and 0.167 on Debian 13's LibTorch 2.6.
  EXPECT_LT(diff, 0.2);
  // One image alone after a batch of 36 gets what it got in the batch
  // (LibTorch 1.13's oneDNN path cannot reorder weights packed for the
  // larger batch: Int8Graph packs them again).
  (*trunk)->ForwardTrunk(x.repeat({6, 1, 1, 1}));
  const torch::Tensor one = (*trunk)->ForwardTrunk(x.slice(0, 5, 6)).dequantize();
  EXPECT_LT((one - q.dequantize().slice(0, 5, 6)).abs().max().item<double>(), 1e-4);

  // Without a calibration int8 is refused, naming what makes one.
  auto none = (*zoo)->Trunk(bb, Precision::kInt8);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(none.status().message().find("graft models optimize"), std::string::npos) << none.status();
}

// squeezenet1_0 is left out: no batch norm, activations in the hundreds,
// and post-training int8 flips 2 of the 6 photos (dog: dogsled/Eskimo dog
// 0.38/0.20; horses) — PyTorch FX on onednn flips 2 as well (horses,
// person), largest |dp| 0.171 against graft's 0.159.
INSTANTIATE_TEST_SUITE_P(SharedWeights, Int8Precision, ::testing::Values("mobilenet_v2", "squeezenet1_1"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace graft::core
