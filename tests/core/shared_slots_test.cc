#include "core/util/shared_slots.h"

#include <gtest/gtest.h>

#include <optional>

namespace graft::core {
namespace {

SharedSlots::Limits Uploads(int total, int share) {
  return {"uploads", total, "--max_concurrent_uploads", share, "--max_uploads_per_principal"};
}

TEST(SharedSlotsTest, APrincipalHoldsAtMostItsShareAndOthersGetTheRest) {
  SharedSlots slots(Uploads(3, 2));
  auto a1 = slots.Acquire("alice");
  auto a2 = slots.Acquire("alice");
  ASSERT_TRUE(a1.ok() && a2.ok());
  auto a3 = slots.Acquire("alice");
  EXPECT_EQ(a3.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(a3.status().message(),
            "principal 'alice' already holds 2 of the 3 uploads slots, its share (--max_uploads_per_principal); "
            "retry when one of them has ended");
  auto b1 = slots.Acquire("bob");
  ASSERT_TRUE(b1.ok());
  // Every slot is held: a third principal is told the total and its flag.
  auto c1 = slots.Acquire("carol");
  EXPECT_EQ(c1.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(c1.status().message().find("3 uploads are in progress, the most at once (--max_concurrent_uploads)"),
            std::string::npos)
      << c1.status();
  EXPECT_EQ(slots.held(), 3);
  EXPECT_EQ(slots.held_by("alice"), 2);
}

TEST(SharedSlotsTest, ASlotIsFreedWhenItsHolderEndsAndMovesWithIt) {
  SharedSlots slots(Uploads(1, 1));
  {
    std::optional<SharedSlots::Slot> outer;
    {
      auto held = slots.Acquire("alice");
      ASSERT_TRUE(held.ok());
      outer.emplace(std::move(*held));
    }
    EXPECT_EQ(slots.held_by("alice"), 1);  // moved out, still held
    EXPECT_FALSE(slots.Acquire("bob").ok());
  }
  EXPECT_EQ(slots.held(), 0);
  EXPECT_EQ(slots.held_by("alice"), 0);
  EXPECT_TRUE(slots.Acquire("bob").ok());
}

TEST(SharedSlotsTest, AShareAboveTheTotalIsTheTotalAndZeroIsOne) {
  SharedSlots wide(Uploads(2, 10));
  EXPECT_EQ(wide.limits().per_principal, 2);
  SharedSlots none(Uploads(0, 0));
  EXPECT_EQ(none.limits().total, 1);
  EXPECT_EQ(none.limits().per_principal, 1);
  auto one = none.Acquire("alice");
  EXPECT_TRUE(one.ok());
}

}  // namespace
}  // namespace graft::core
