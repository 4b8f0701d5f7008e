#include "core/data/split.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace graft::core {
namespace {

std::vector<SplitItem> Items(int label, int n, const std::string& prefix) {
  std::vector<SplitItem> out;
  for (int i = 0; i < n; ++i) out.push_back({label, prefix + std::to_string(i) + ".jpg"});
  return out;
}

int CountVal(const std::vector<bool>& val, size_t from, size_t to) {
  int n = 0;
  for (size_t i = from; i < to; ++i) n += val[i] ? 1 : 0;
  return n;
}

TEST(SplitTest, EachClassValidatesItsShareDrawnBySeedAndAloneOfTheOthers) {
  std::vector<SplitItem> items = Items(0, 50, "ants/");
  const auto bees = Items(1, 7, "bees/");
  items.insert(items.end(), bees.begin(), bees.end());
  items.push_back({2, "wasps/only.jpg"});
  const std::vector<bool> val = StratifiedValidation(items, 0.2, 3);
  EXPECT_EQ(CountVal(val, 0, 50), 10);
  EXPECT_EQ(CountVal(val, 50, 57), 1);   // 1.4 rounds to 1
  EXPECT_EQ(CountVal(val, 57, 58), 0);   // a lone image trains
  EXPECT_EQ(StratifiedValidation(items, 0.2, 3), val) << "the same seed draws the same images";
  EXPECT_NE(StratifiedValidation(items, 0.2, 4), val) << "another seed draws others";
  // A class's draw depends on its own images only: not on their order in
  // the list, nor on the other classes.
  std::vector<SplitItem> reversed(items.rbegin(), items.rend());
  const std::vector<bool> again = StratifiedValidation(reversed, 0.2, 3);
  for (size_t i = 0; i < items.size(); ++i) EXPECT_EQ(again[items.size() - 1 - i], val[i]) << items[i].path;
  const std::vector<bool> ants_alone = StratifiedValidation(Items(0, 50, "ants/"), 0.2, 3);
  EXPECT_EQ(std::vector<bool>(val.begin(), val.begin() + 50), ants_alone);
}

}  // namespace
}  // namespace graft::core
