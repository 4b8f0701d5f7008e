// Every architecture in the registry against torchvision by structure: the
// same state-dict names and shapes (so published weights load strictly), the
// parameter count the registry advertises, and blocks whose parameter
// prefixes cover every backbone parameter exactly once (so top:N unfreezes
// exactly the expected parameters).

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_join.h"
#include "core/zoo/registry.h"
#include "core/zoo/state_dict.h"

namespace graft::core {
namespace {

std::vector<std::string> Archs(bool torchvision_only) {
  std::vector<std::string> out;
  for (const auto& s : Registry::BuiltIn().specs()) {
    if (!torchvision_only || s.reference == "torchvision") out.push_back(s.name);
  }
  return out;
}

class ShapesTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ShapesTest, StructureMatchesTorchvision) {
  const std::string arch = GetParam();
  const BackboneSpec* spec = Registry::BuiltIn().Find(arch);
  ASSERT_NE(spec, nullptr);
  std::ifstream in(std::string(GRAFT_PARITY_DIR) + "/" + arch + "-shapes.txt");
  ASSERT_TRUE(in) << "no torchvision shapes for " << arch;
  int64_t torchvision_count = 0;
  in >> torchvision_count;
  std::map<std::string, std::string> expected;
  for (std::string name, dims; in >> name >> dims;) expected[name] = dims;

  const BackbonePtr model = spec->make();
  EXPECT_EQ(spec->parameter_count, torchvision_count);
  EXPECT_EQ(model->ParameterCount(), torchvision_count);
  std::map<std::string, std::string> got;
  for (const auto& [name, t] : ModuleStateDict(*model)) got[name] = t.dim() == 0 ? "-" : absl::StrJoin(t.sizes(), ",");
  for (const auto& [name, dims] : expected) {
    const auto it = got.find(name);
    if (it == got.end()) {
      ADD_FAILURE() << arch << ": graft lacks " << name;
    } else {
      EXPECT_EQ(it->second, dims) << arch << ": " << name;
    }
  }
  for (const auto& [name, dims] : got) EXPECT_TRUE(expected.count(name)) << arch << ": torchvision has no " << name;
}

class BlocksTest : public ::testing::TestWithParam<std::string> {};

// Each parameter outside the classifier belongs to exactly one block, so that
// top:N unfreezes exactly the expected parameters.
TEST_P(BlocksTest, EveryParameterIsInExactlyOneBlock) {
  const std::string arch = GetParam();
  const BackboneSpec* spec = Registry::BuiltIn().Find(arch);
  ASSERT_NE(spec, nullptr);
  const BackbonePtr model = spec->make();
  for (const auto& p : model->named_parameters()) {
    if (p.key().rfind(spec->classifier_prefix, 0) == 0) continue;
    int owners = 0;
    for (const auto& block : model->blocks()) {
      for (const auto& prefix : block.param_prefixes) owners += p.key().rfind(prefix, 0) == 0;
    }
    EXPECT_EQ(owners, 1) << arch << ": " << p.key() << " is in " << owners << " blocks";
  }
}

INSTANTIATE_TEST_SUITE_P(Registry, ShapesTest, ::testing::ValuesIn(Archs(true)),
                         [](const auto& info) { return info.param; });
INSTANTIATE_TEST_SUITE_P(Registry, BlocksTest, ::testing::ValuesIn(Archs(false)),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace graft::core
