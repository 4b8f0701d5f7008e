// Every architecture in the registry against torchvision by structure: the
// same state-dict names and shapes (so published weights load strictly), the
// parameter count the registry advertises, and blocks whose parameter
// prefixes cover every backbone parameter exactly once (so top:N unfreezes
// exactly the expected parameters).

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/str_join.h"
#include "core/zoo/registry.h"
#include "core/zoo/state_dict.h"
#include "tests/testing/paths.h"

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

// Each parameter outside the classifier belongs to exactly one block, and
// top:1 and top:2 leave exactly the parameters of the modules (or the single
// parameters) their blocks name trainable, every other module in eval mode.
TEST_P(BlocksTest, EachParameterInOneBlockAndTopNTrainsExactlyThem) {
  const BackboneSpec* spec = Registry::BuiltIn().Find(GetParam());
  ASSERT_NE(spec, nullptr);
  const BackbonePtr model = spec->make();
  for (const auto& p : model->named_parameters()) {
    if (p.key().rfind(spec->classifier_prefix, 0) == 0) continue;
    int owners = 0;
    for (const auto& block : model->blocks()) {
      for (const auto& prefix : block.param_prefixes) owners += p.key().rfind(prefix, 0) == 0;
    }
    EXPECT_EQ(owners, 1) << GetParam() << ": " << p.key() << " is in " << owners << " blocks";
  }
  std::map<std::string, std::shared_ptr<torch::nn::Module>> modules;
  for (const auto& m : model->named_modules("", /*include_self=*/false)) modules[m.key()] = m.value();
  const auto params = model->named_parameters();
  const auto& blocks = model->blocks();
  for (int n : {1, 2}) {
    model->SetTrainableBlocks(n, /*train_batch_norm=*/true);
    std::set<std::string> expected, got, training_roots;
    for (size_t b = blocks.size() - static_cast<size_t>(n); b < blocks.size(); ++b) {
      size_t owned = 0;
      for (const std::string& prefix : blocks[b].param_prefixes) {
        if (prefix.back() == '.') {
          const auto it = modules.find(prefix.substr(0, prefix.size() - 1));
          ASSERT_NE(it, modules.end()) << blocks[b].name << " names no module " << prefix;
          for (const auto& p : it->second->named_parameters()) expected.insert(prefix + p.key());
          training_roots.insert(prefix);
          owned += it->second->parameters().size();
        } else {
          ASSERT_TRUE(params.contains(prefix)) << blocks[b].name << " names no parameter " << prefix;
          expected.insert(prefix);
          ++owned;
        }
      }
      EXPECT_GT(owned, 0u) << blocks[b].name << " owns no parameter";
    }
    for (const auto& p : params) {
      if (p.value().requires_grad()) got.insert(p.key());
    }
    EXPECT_EQ(got, expected) << GetParam() << " top:" << n;
    for (const auto& [name, m] : modules) {
      bool inside = false;
      for (const auto& root : training_roots) inside = inside || (name + ".").rfind(root, 0) == 0;
      EXPECT_EQ(m->is_training(), inside) << GetParam() << " top:" << n << ": " << name;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Registry, ShapesTest, ::testing::ValuesIn(Archs(true)),
                         [](const auto& info) { return info.param; });
INSTANTIATE_TEST_SUITE_P(Registry, BlocksTest, ::testing::ValuesIn(Archs(false)),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace graft::core
