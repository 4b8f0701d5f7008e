// Every zoo architecture against torchvision: random weights written by
// torchvision (Debian's python3-torchvision), loaded strictly by graft from
// the .pth file, the same input batch, eval-mode logits within 1e-4 relative.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>

#include "core/zoo/registry.h"
#include "core/zoo/state_dict.h"
#include "tests/testing/paths.h"
#include "tests/testing/temp_dir.h"

namespace graft::core {
namespace {

const std::vector<std::string> kArchs = {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                                         "mobilenet_v2", "squeezenet1_0", "squeezenet1_1"};

class ParityTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    dir_ = new graft::testing::TempDir();
    std::string cmd = graft::testing::Python() + " " + graft::testing::SourceDir() + "/tests/parity/make_parity.py " +
                      dir_->path() + " 112";
    for (const auto& a : kArchs) cmd += " " + a;
    ASSERT_EQ(std::system(cmd.c_str()), 0) << "torchvision reference generation failed: " << cmd;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static graft::testing::TempDir* dir_;
};

graft::testing::TempDir* ParityTest::dir_ = nullptr;

TEST_P(ParityTest, LogitsMatchTorchvision) {
  const std::string arch = GetParam();
  const BackboneSpec* spec = Registry::BuiltIn().Find(arch);
  ASSERT_NE(spec, nullptr);
  BackbonePtr model = spec->make();
  auto weights = ReadPth(dir_->Join(arch + ".pth"));
  ASSERT_TRUE(weights.ok()) << weights.status();
  ASSERT_TRUE(LoadStateDict(*model, *weights).ok());
  auto io = ReadSafetensors(dir_->Join(arch + "-io.safetensors"));
  ASSERT_TRUE(io.ok()) << io.status();
  const torch::Tensor input = io->at(0).second;
  const torch::Tensor expected = io->at(1).second;
  model->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor got = model->forward(input);
  ASSERT_EQ(got.sizes(), expected.sizes());
  const double scale = expected.abs().max().item<double>();
  const double err = (got - expected).abs().max().item<double>();
  EXPECT_LE(err, 1e-4 * scale) << arch << ": max abs error " << err << " vs logit scale " << scale;
  EXPECT_TRUE(torch::equal(got.argmax(1), expected.argmax(1)));
}

INSTANTIATE_TEST_SUITE_P(ZooV1, ParityTest, ::testing::ValuesIn(kArchs),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace graft::core
