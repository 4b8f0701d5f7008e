// Xception and InceptionResNetV2, the Keras backbones with no torchvision
// twin: Keras's parameter counts, output shapes at their 299x299 input, timm's
// parameter names (so timm's files load), and the folded inference path.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/zoo/keras_native.h"
#include "core/zoo/registry.h"
#include "core/zoo/state_dict.h"

namespace graft::core {
namespace {

struct Case {
  std::string name;
  int64_t keras_count;
  int64_t feature_dim;
  int64_t map_side;
  std::vector<std::string> timm_keys;
  friend void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }
};

class KerasNativeTest : public ::testing::TestWithParam<Case> {};

TEST_P(KerasNativeTest, CountsShapesNamesAndFolding) {
  const Case& c = GetParam();
  const BackboneSpec* spec = Registry::BuiltIn().Find(c.name);
  ASSERT_NE(spec, nullptr);
  EXPECT_EQ(spec->reference, "timm");
  EXPECT_EQ(spec->preprocessing.height, 299);
  EXPECT_EQ(spec->feature_dim, c.feature_dim);
  BackbonePtr model = spec->make();
  EXPECT_EQ(KerasParameterCount(*model), c.keras_count) << "Keras counts weights and moving statistics";
  EXPECT_EQ(spec->parameter_count, c.keras_count);

  std::set<std::string> names;
  for (const auto& [name, t] : ModuleStateDict(*model)) names.insert(name);
  for (const auto& key : c.timm_keys) EXPECT_TRUE(names.count(key)) << c.name << " lacks timm's " << key;

  // Random statistics so that folding has something to fold.
  torch::manual_seed(3);
  {
    torch::NoGradGuard no_grad;
    for (auto& b : model->named_buffers()) {
      if (b.key().find("running_mean") != std::string::npos) b.value().normal_(0, 0.1);
      if (b.key().find("running_var") != std::string::npos) b.value().uniform_(0.75, 1.25);
    }
  }
  model->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor x = torch::randn({1, 3, 299, 299});
  const torch::Tensor fmap = model->ForwardTrunk(x);
  EXPECT_EQ(fmap.sizes(), (std::vector<int64_t>{1, c.feature_dim, c.map_side, c.map_side}));
  const torch::Tensor logits = model->ForwardHead(fmap);
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{1, 1000}));

  // A file in timm's (or Cadene's) names loads into a fresh model.
  StateDict file = ModuleStateDict(*model);
  for (auto& [name, t] : file) {
    if (name.rfind(spec->classifier_prefix, 0) == 0) name = "last_linear." + name.substr(spec->classifier_prefix.size());
  }
  if (c.name == "inception_resnet_v2") file.emplace_back("conv2d_1a.bn.weight", torch::ones({32}));
  BackbonePtr reloaded = spec->make();
  const absl::Status loaded = LoadStateDict(*reloaded, ToModuleNames(*spec, file));
  ASSERT_TRUE(loaded.ok()) << loaded;
  reloaded->FoldBatchNorm();
  const torch::Tensor folded = reloaded->forward(x);
  EXPECT_LT((folded - logits).abs().max().item<double>(), 1e-4 * logits.abs().max().item<double>());
}

INSTANTIATE_TEST_SUITE_P(
    Keras, KerasNativeTest,
    ::testing::Values(Case{"xception", 22910480, 2048, 10,
                           {"conv1.weight", "bn2.running_var", "block1.rep.0.conv1.weight", "block1.rep.1.weight",
                            "block2.rep.1.pointwise.weight", "block11.rep.8.running_mean", "block12.skipbn.bias",
                            "conv4.pointwise.weight", "bn4.weight", "fc.weight"}},
                      Case{"inception_resnet_v2", 55873736, 1536, 8,
                           {"conv2d_1a.conv.weight", "conv2d_1a.bn.bias", "mixed_5b.branch3.1.conv.weight",
                            "repeat.9.conv2d.bias", "mixed_6a.branch1.2.bn.running_var",
                            "repeat_1.19.branch1.2.conv.weight", "mixed_7a.branch2.2.conv.weight",
                            "repeat_2.8.branch1.1.conv.weight", "block8.conv2d.weight", "conv2d_7b.bn.running_mean",
                            "classif.weight"}}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace graft::core
