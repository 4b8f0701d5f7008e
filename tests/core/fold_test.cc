// The optimised inference path (batch norm folded, channels-last) computes what
// the torchvision-shaped module computes in eval mode.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/zoo/registry.h"
#include "core/zoo/zoo.h"

namespace graft::core {
namespace {

class FoldTest : public ::testing::TestWithParam<std::string> {};

TEST_P(FoldTest, FoldedAndUnfoldedAgree) {
  const BackboneSpec* spec = Registry::BuiltIn().Find(GetParam());
  ASSERT_NE(spec, nullptr);
  torch::manual_seed(7);
  BackbonePtr reference = spec->make();
  {
    torch::NoGradGuard no_grad;
    // Every batch norm (torch's, or a bare one in a feature list): any module
    // holding running statistics.
    for (auto& m : reference->modules()) {
      auto buffers = m->named_buffers(/*recurse=*/false);
      if (!buffers.contains("running_var")) continue;
      buffers["running_mean"].normal_(0, 0.2);
      buffers["running_var"].uniform_(0.5, 1.5);
      auto params = m->named_parameters(/*recurse=*/false);
      params["weight"].uniform_(0.5, 1.5);
      params["bias"].normal_(0, 0.2);
    }
  }
  reference->eval();
  auto folded = MakeInferenceBackbone(*spec, ModuleStateDict(*reference), torch::kCPU);
  ASSERT_TRUE(folded.ok()) << folded.status();
  int bn_params = 0;
  for (const auto& p : (*folded)->named_parameters()) bn_params += p.key().find("bn") != std::string::npos;
  torch::NoGradGuard no_grad;
  const torch::Tensor x = torch::randn({2, 3, 96, 96});
  const torch::Tensor expected = reference->forward(x);
  const torch::Tensor got = (*folded)->forward(x.contiguous(torch::MemoryFormat::ChannelsLast));
  const double scale = expected.abs().max().item<double>();
  EXPECT_LE((got - expected).abs().max().item<double>(), 1e-4 * scale);
  // Intermediate blocks too (what Embed and the training prefix use).
  const size_t mid = reference->blocks().size() / 2;
  const torch::Tensor a = reference->ForwardTrunk(x, 0, mid);
  const torch::Tensor b = (*folded)->ForwardTrunk(x.contiguous(torch::MemoryFormat::ChannelsLast), 0, mid);
  EXPECT_LE((a - b).abs().max().item<double>(), 1e-4 * a.abs().max().item<double>());
}

INSTANTIATE_TEST_SUITE_P(Zoo, FoldTest, ::testing::Values("resnet18", "resnet50", "mobilenet_v2", "squeezenet1_1", "resnext50_32x4d", "vgg11_bn",
                                           "alexnet", "densenet121", "mobilenet_v3_small", "shufflenet_v2_x0_5",
                                           "mnasnet0_5", "efficientnet_b0", "efficientnet_v2_s", "convnext_tiny", "regnet_y_400mf", "inception_v3", "googlenet",
                                           "vit_b_32", "swin_t"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace graft::core
