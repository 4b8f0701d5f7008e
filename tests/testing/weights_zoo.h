#pragma once

// The zoo of ../shared/weights on the CPU, for a test suite that keeps one
// for all its tests (SetUpTestSuite makes it, TearDownTestSuite deletes it).

#include <gtest/gtest.h>

#include <memory>

#include "core/zoo/zoo.h"
#include "tests/testing/paths.h"

namespace graft::testing {

// Null, with a test failure naming why, when it cannot be made.
inline core::Zoo* NewWeightsZoo() {
  auto zoo = core::Zoo::Create(core::ZooAt(WeightsDir(), "cpu"));
  EXPECT_TRUE(zoo.ok()) << zoo.status();
  return zoo.ok() ? zoo->release() : nullptr;
}

}  // namespace graft::testing
