#include "core/data/split.h"

#include <algorithm>
#include <map>
#include <random>

namespace graft::core {

std::vector<bool> StratifiedValidation(const std::vector<SplitItem>& items, double fraction, uint64_t seed) {
  std::map<int, std::vector<size_t>> by_class;
  for (size_t i = 0; i < items.size(); ++i) by_class[items[i].label].push_back(i);
  std::vector<bool> val(items.size(), false);
  for (auto& [label, members] : by_class) {
    std::sort(members.begin(), members.end(), [&](size_t a, size_t b) { return items[a].path < items[b].path; });
    std::mt19937_64 rng(seed * 6364136223846793005ULL + static_cast<uint64_t>(label));
    std::shuffle(members.begin(), members.end(), rng);
    const size_t n_val =
        members.size() >= 2 ? std::max<size_t>(1, static_cast<size_t>(members.size() * fraction + 0.5)) : 0;
    for (size_t i = 0; i < n_val; ++i) val[members[i]] = true;
  }
  return val;
}

}  // namespace graft::core
