#include <torch/nn/module.h>
#include <torch/utils.h>

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/util/torch_status.h"
#include "core/zoo/state_dict.h"

namespace graft::core {
namespace {

std::string ListKeys(const std::vector<std::string>& keys) {
  constexpr size_t kShown = 8;
  std::vector<std::string> shown(keys.begin(), keys.begin() + std::min(keys.size(), kShown));
  std::string s = absl::StrJoin(shown, ", ");
  if (keys.size() > kShown) absl::StrAppend(&s, " and ", keys.size() - kShown, " more");
  return s;
}

std::string Shape(const torch::Tensor& t) { return absl::StrCat("[", absl::StrJoin(t.sizes(), ", "), "]"); }

}  // namespace

absl::StatusOr<StateDict> ReadWeightsFile(const std::string& path) {
  if (absl::EndsWith(path, ".safetensors")) return ReadSafetensors(path);
  if (absl::EndsWith(path, ".pth") || absl::EndsWith(path, ".pt")) return ReadPth(path);
  return absl::InvalidArgumentError(absl::StrCat(path, ": weights must be .pth or .safetensors"));
}

StateDict ModuleStateDict(const torch::nn::Module& module) {
  StateDict out;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) out.emplace_back(p.key(), p.value());
  for (const auto& b : module.named_buffers(/*recurse=*/true)) out.emplace_back(b.key(), b.value());
  return out;
}

absl::Status LoadStateDict(torch::nn::Module& module, const StateDict& tensors) {
  std::map<std::string, const torch::Tensor*> given;
  for (const auto& [name, t] : tensors) given[name] = &t;
  const StateDict targets = ModuleStateDict(module);
  std::vector<std::string> missing, mismatched, unexpected;
  std::set<std::string> expected;
  for (const auto& [name, target] : targets) {
    expected.insert(name);
    const auto it = given.find(name);
    if (it == given.end()) {
      missing.push_back(name);
    } else if (it->second->sizes() != target.sizes()) {
      mismatched.push_back(absl::StrCat(name, " (file ", Shape(*it->second), ", model ", Shape(target), ")"));
    }
  }
  for (const auto& [name, t] : tensors) {
    if (expected.count(name) == 0) unexpected.push_back(name);
  }
  std::vector<std::string> problems;
  if (!missing.empty()) problems.push_back(absl::StrCat(missing.size(), " missing: ", ListKeys(missing)));
  if (!unexpected.empty()) problems.push_back(absl::StrCat(unexpected.size(), " unexpected: ", ListKeys(unexpected)));
  if (!mismatched.empty()) problems.push_back(absl::StrCat(mismatched.size(), " mis-shaped: ", ListKeys(mismatched)));
  if (!problems.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("weights do not match the architecture: ", absl::StrJoin(problems, "; ")));
  }
  return GuardInternal("copying weights", [&]() {
    torch::NoGradGuard no_grad;
    for (const auto& [name, target] : targets) {
      torch::Tensor dst = target;
      dst.copy_(*given.at(name));
    }
    return absl::OkStatus();
  });
}

}  // namespace graft::core
