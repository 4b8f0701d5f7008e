// Every zoo architecture against torchvision: random weights written by
// torchvision (Debian's python3-torchvision), loaded strictly by graft from
// the .pth file, the same input batch, eval-mode logits within 1e-4 relative.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/zoo/registry.h"
#include "core/zoo/state_dict.h"
#include "tests/testing/paths.h"

namespace graft::core {
namespace {

const std::vector<std::string> kArchs = {GRAFT_PARITY_ARCHS};

// The torchvision files come from the ctest fixture "parity_reference"
// (make_parity.py, run once for the whole suite) in GRAFT_PARITY_DIR.
class ParityTest : public ::testing::TestWithParam<std::string> {
 protected:
  static std::string File(const std::string& name) { return std::string(GRAFT_PARITY_DIR) + "/" + name; }
};

TEST_P(ParityTest, LogitsMatchTorchvision) {
  const std::string arch = GetParam();
  const BackboneSpec* spec = Registry::BuiltIn().Find(arch);
  ASSERT_NE(spec, nullptr);
  BackbonePtr model = spec->make();
  auto weights = ReadPth(File(arch + ".pth"));
  ASSERT_TRUE(weights.ok()) << weights.status();
  // As the zoo loads published files (old names mapped, auxiliary heads dropped).
  const absl::Status loaded = LoadStateDict(*model, ToModuleNames(*spec, *weights));
  ASSERT_TRUE(loaded.ok()) << loaded;
  auto io = ReadSafetensors(File(arch + "-io.safetensors"));
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
