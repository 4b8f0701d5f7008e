// The real ImageNet weights in ../shared/weights through the whole path:
// file -> strict load -> decode -> preprocess -> forward -> labels.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/serve/predictor.h"
#include "core/util/files.h"
#include "core/zoo/registry.h"
#include "core/zoo/state_dict.h"
#include "core/zoo/zoo.h"
#include "tests/testing/paths.h"
#include "tests/testing/temp_dir.h"

#include <cstdio>
#include <fstream>
#include <future>

#include "absl/strings/str_cat.h"

namespace graft::core {
namespace {

using graft::testing::ImagesDir;

// "malamute, malemute, Alaskan malamute" -> "malamute"
std::string Short(const std::string& label) { return label.substr(0, label.find(',')); }
using graft::testing::WeightsDir;

class RealWeightsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ZooOptions options;
    options.zoo_dir = WeightsDir();
    options.device = "cpu";
    auto zoo = Zoo::Create(options);
    ASSERT_TRUE(zoo.ok()) << zoo.status();
    zoo_ = zoo->release();
  }
  static void TearDownTestSuite() {
    delete zoo_;
    zoo_ = nullptr;
  }
  static ImageInput Image(const std::string& name) {
    auto bytes = ReadFile(ImagesDir() + "/" + name);
    EXPECT_TRUE(bytes.ok()) << bytes.status();
    return ImageInput{bytes.value_or(""), {}};
  }
  static Zoo* zoo_;
};

Zoo* RealWeightsTest::zoo_ = nullptr;

TEST_F(RealWeightsTest, PthAndSafetensorsGiveIdenticalLogits) {
  const BackboneSpec* spec = Registry::BuiltIn().Find("MobileNetV2");
  ASSERT_NE(spec, nullptr);
  BackbonePtr a = spec->make(), b = spec->make();
  auto pth = ReadPth(WeightsDir() + "/mobilenet_v2-imagenet.pth");
  auto st = ReadSafetensors(WeightsDir() + "/mobilenet_v2-imagenet.safetensors");
  ASSERT_TRUE(pth.ok()) << pth.status();
  ASSERT_TRUE(st.ok()) << st.status();
  ASSERT_TRUE(LoadStateDict(*a, *pth).ok());
  ASSERT_TRUE(LoadStateDict(*b, *st).ok());
  a->eval();
  b->eval();
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  const torch::Tensor x = torch::randn({2, 3, 224, 224});
  EXPECT_TRUE(torch::equal(a->forward(x), b->forward(x)));
}

TEST_F(RealWeightsTest, ListsResidentAndMissingBackbones) {
  // Loaded at first use, not at start.
  const auto fresh = Zoo::Create(ZooAt(graft::testing::WeightsDir(), "cpu"));
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  const auto before = (*fresh)->Get("mobilenet_v2");
  ASSERT_TRUE(before.ok());
  EXPECT_TRUE(before->weights_present);
  EXPECT_EQ(before->device, "");
  EXPECT_EQ(before->resident_bytes, 0);
  EXPECT_EQ((*fresh)->Memory().backbones, 0);
  const auto resident = (*fresh)->Resident("mobilenet_v2");
  ASSERT_TRUE(resident.ok()) << resident.status();
  const auto mobilenet = (*fresh)->Get("mobilenet_v2");
  ASSERT_TRUE(mobilenet.ok());
  EXPECT_TRUE(mobilenet->weights_present);
  EXPECT_EQ(mobilenet->device, "cpu");
  EXPECT_EQ(mobilenet->users, 1);  // this test's `resident`
  EXPECT_GT(mobilenet->last_used, 0);
  EXPECT_EQ(mobilenet->parameter_count, 3504872);  // torchvision's published count
  EXPECT_GT(mobilenet->resident_bytes, 3504872 * 4);
  EXPECT_EQ(mobilenet->blocks.size(), 19u);
  const auto resnet = zoo_->Get("ResNet50");
  ASSERT_TRUE(resnet.ok());
  EXPECT_FALSE(resnet->weights_present);
  EXPECT_EQ(resnet->parameter_count, 25557032);
  EXPECT_EQ(zoo_->Get("vgg99").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(RealWeightsTest, MobileNetV2SeesAMalamute) {
  Predictor predictor(*zoo_, nullptr, {});
  const auto r = predictor.Predict("mobilenet_v2", {Image("dog.jpg")}, 5);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->images.size(), 1u);
  EXPECT_EQ(Short(r->images[0][0].label), "malamute");
  EXPECT_NEAR(r->images[0][0].probability, 0.69, 0.1);
  EXPECT_GT(r->timing.compute_us, 0);
}

TEST_F(RealWeightsTest, SqueezeNetTop5HasSledDogs) {
  Predictor predictor(*zoo_, nullptr, {});
  const auto r = predictor.Predict("squeezenet1_1", {Image("dog.jpg")}, 5);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Short(r->images[0][0].label), "dogsled");
  int sled_dogs = 0;
  for (const auto& s : r->images[0]) {
    const std::string l = Short(s.label);
    if (l == "malamute" || l == "Siberian husky" || l == "Eskimo dog" || l == "dogsled") ++sled_dogs;
  }
  EXPECT_GE(sled_dogs, 2);
}

TEST_F(RealWeightsTest, BatchPredictsEachImageItsOwnClass) {
  Predictor predictor(*zoo_, nullptr, {});
  const auto r = predictor.Predict("mobilenet_v2", {Image("dog.jpg"), Image("eagle.jpg"), Image("dog.jpg")}, 1);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->images.size(), 3u);
  EXPECT_EQ(Short(r->images[0][0].label), "malamute");
  EXPECT_EQ(Short(r->images[1][0].label), "kite");  // the bird; torchvision says so too (0.44, bald eagle 0.32)
  EXPECT_EQ(Short(r->images[2][0].label), "malamute");
}

// From JPEG bytes to probabilities, graft and torchvision's documented
// pipeline (PIL decode, Resize(256), CenterCrop(224), ToTensor, Normalize,
// mobilenet_v2 from the same .pth) agree on every photo.
TEST_F(RealWeightsTest, ProbabilitiesMatchTorchvisionFromJpegBytes) {
  graft::testing::TempDir dir;
  const std::string script = dir.Join("ref.py"), out = dir.Join("ref.txt");
  std::ofstream(script) << R"(
import sys, torch, torchvision
from torchvision import transforms
from PIL import Image
weights, images, out = sys.argv[1], sys.argv[2], sys.argv[3]
m = torchvision.models.mobilenet_v2(); m.load_state_dict(torch.load(weights)); m.eval()
tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                         transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
with open(out, 'w') as f, torch.no_grad():
    for name in sys.argv[4:]:
        p = m(tf(Image.open(images + '/' + name).convert('RGB')).unsqueeze(0)).softmax(1)[0]
        v, i = p.topk(3)
        f.write(name + ' ' + ' '.join('%d %.6f' % (int(j), float(q)) for q, j in zip(v, i)) + '\n')
)";
  const std::vector<std::string> names{"dog.jpg", "eagle.jpg", "giraffe.jpg", "horses.jpg", "kite.jpg", "person.jpg"};
  std::string cmd = absl::StrCat(GRAFT_PYTHON, " ", script, " ", graft::testing::WeightsDir(),
                                 "/mobilenet_v2-imagenet.pth ", ImagesDir(), " ", out);
  for (const auto& n : names) cmd += " " + n;
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  Predictor predictor(*zoo_, nullptr, {});
  std::ifstream ref(out);
  for (const auto& n : names) {
    std::string name;
    ref >> name;
    ASSERT_EQ(name, n);
    const auto r = predictor.Predict("mobilenet_v2", {Image(n)}, 3);
    ASSERT_TRUE(r.ok()) << r.status();
    for (int k = 0; k < 3; ++k) {
      int index = 0;
      float probability = 0;
      ref >> index >> probability;
      EXPECT_EQ(r->images[0][static_cast<size_t>(k)].index, index) << n << " rank " << k + 1;
      EXPECT_NEAR(r->images[0][static_cast<size_t>(k)].probability, probability, 2e-3) << n << " rank " << k + 1;
    }
  }
}

// Decoding in the batcher (in parallel, just before the batch runs) or on the
// callers' threads gives the same answers, and under concurrency a corrupt
// image fails its own request only.
TEST_F(RealWeightsTest, DecodingInTheBatcherOrOnTheCallersAnswersTheSame) {
  PredictorOptions on_callers, on_batcher;
  on_callers.decode_on = PredictorOptions::DecodeOn::kCallers;
  on_batcher.decode_on = PredictorOptions::DecodeOn::kBatcher;
  on_batcher.batching.max_queue_delay_us = 200'000;  // let the concurrent requests meet
  const Predictor callers(*zoo_, nullptr, on_callers);
  const Predictor batcher(*zoo_, nullptr, on_batcher);
  const std::vector<std::string> names{"dog.jpg", "eagle.jpg", "giraffe.jpg", "horses.jpg", "kite.jpg", "person.jpg"};
  std::vector<std::future<absl::StatusOr<PredictResult>>> served;
  for (const auto& n : names) {
    served.push_back(std::async(std::launch::async, [&, n] { return batcher.Predict("mobilenet_v2", {Image(n)}, 3); }));
  }
  const std::string dog = Image("dog.jpg").encoded;
  const std::vector<ImageInput> with_corrupt{Image("eagle.jpg"), ImageInput{dog.substr(0, dog.size() / 2), {}}};
  auto corrupt = std::async(std::launch::async, [&] { return batcher.Predict("mobilenet_v2", with_corrupt, 3); });
  int64_t largest_batch = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    const auto got = served[i].get();
    const auto want = callers.Predict("mobilenet_v2", {Image(names[i])}, 3);
    ASSERT_TRUE(got.ok()) << names[i] << ": " << got.status();
    ASSERT_TRUE(want.ok()) << names[i] << ": " << want.status();
    EXPECT_GT(got->timing.decode_us, 0);
    largest_batch = std::max(largest_batch, got->timing.batch_images);
    for (size_t k = 0; k < 3; ++k) {
      EXPECT_EQ(got->images[0][k].index, want->images[0][k].index) << names[i] << " rank " << k + 1;
      EXPECT_NEAR(got->images[0][k].probability, want->images[0][k].probability, 1e-5) << names[i];
    }
  }
  EXPECT_GT(largest_batch, 1) << "the concurrent requests never shared a batch";
  const auto bad = corrupt.get();
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << bad.status();
  EXPECT_NE(bad.status().message().find("image 1: truncated JPEG"), std::string::npos) << bad.status();
  EXPECT_EQ(callers.Predict("mobilenet_v2", with_corrupt, 3).status(), bad.status());
}

TEST_F(RealWeightsTest, EmbedReturnsPooledFeaturesAndNamedBlocks) {
  Predictor predictor(*zoo_, nullptr, {});
  const auto r = predictor.Embed("mobilenet_v2", {Image("dog.jpg"), Image("eagle.jpg")}, "");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->embeddings.sizes(), (std::vector<int64_t>{2, 1280}));
  const auto mid = predictor.Embed("mobilenet_v2", {Image("dog.jpg")}, "features.13");
  ASSERT_TRUE(mid.ok()) << mid.status();
  EXPECT_EQ(mid->embeddings.size(1), 96);
  const auto bad = predictor.Embed("mobilenet_v2", {Image("dog.jpg")}, "features.99");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(RealWeightsTest, MissingWeightsIsFailedPrecondition) {
  Predictor predictor(*zoo_, nullptr, {});
  const auto r = predictor.Predict("resnet18", {Image("dog.jpg")}, 5);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("has no ImageNet weights"), std::string::npos) << r.status();
}

}  // namespace
}  // namespace graft::core
