// Device transfers and mixed precision. On CPU both must leave results
// exactly as they were; the CUDA tests run where a GPU is (and are skipped,
// never faked, where none is).

#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "core/serve/predictor.h"
#include "core/util/device.h"
#include "core/util/torch_compat.h"
#include "core/util/files.h"
#include "core/zoo/zoo.h"
#include "tests/testing/paths.h"

namespace graft::core {
namespace {

TEST(DeviceTest, OnCpuTransfersKeepValuesAndMixedPrecisionIsOff) {
  const torch::Tensor host = torch::randn({2, 3, 8, 8});
  const torch::Tensor moved = ToDevice(host, torch::kCPU);
  EXPECT_TRUE(moved.is_contiguous(torch::MemoryFormat::ChannelsLast));
  EXPECT_TRUE(torch::equal(moved, host));
  const AutocastScope scope(torch::kCPU, /*enabled=*/true, torch::kHalf);
  EXPECT_FALSE(scope.active());
  const torch::Tensor w = torch::randn({4, 3});
  EXPECT_EQ(torch::matmul(torch::randn({2, 4}), w).scalar_type(), torch::kFloat32);
}

TEST(DeviceTest, ScopedAutocastRestoresTheStateAndDtypeItFound) {
  // CPU autocast exists on every LibTorch graft builds with (1.13 and 2.x);
  // 1.13's takes bfloat16 only.
  const c10::DeviceType cpu = c10::DeviceType::CPU;
  const torch::Tensor a = torch::randn({2, 4}), b = torch::randn({4, 3});
  ASSERT_FALSE(compat::AutocastEnabled(cpu));
  const c10::ScalarType before = compat::AutocastDtype(cpu);
  {
    const ScopedAutocast outer(cpu, torch::kBFloat16);
    EXPECT_TRUE(compat::AutocastEnabled(cpu));
    EXPECT_EQ(compat::AutocastDtype(cpu), torch::kBFloat16);
    EXPECT_EQ(torch::matmul(a, b).scalar_type(), torch::kBFloat16);  // autocast really applies
    {
      compat::SetAutocastEnabled(cpu, false);  // someone inside turns it off
      const ScopedAutocast inner(cpu, torch::kBFloat16);
      EXPECT_TRUE(compat::AutocastEnabled(cpu));
    }
    EXPECT_FALSE(compat::AutocastEnabled(cpu));  // the state the inner scope found
    EXPECT_EQ(compat::AutocastDtype(cpu), torch::kBFloat16);
  }
  EXPECT_FALSE(compat::AutocastEnabled(cpu));
  EXPECT_EQ(compat::AutocastDtype(cpu), before);
  EXPECT_EQ(torch::matmul(a, b).scalar_type(), torch::kFloat32);
}

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device on this machine";
  }
};

TEST_F(CudaTest, PinnedTransfersAndAutocastScopes) {
  const torch::Device cuda(torch::kCUDA, 0);
  const torch::Tensor host = torch::randn({4, 3, 16, 16});
  const torch::Tensor moved = ToDevice(host, cuda);
  EXPECT_TRUE(moved.is_cuda());
  EXPECT_TRUE(torch::equal(moved.cpu(), host));
  const torch::Tensor a = torch::randn({8, 8}, cuda), b = torch::randn({8, 8}, cuda);
  {
    const AutocastScope half(cuda, true, torch::kHalf);
    EXPECT_TRUE(half.active());
    EXPECT_EQ(torch::matmul(a, b).scalar_type(), torch::kHalf);
    {
      const AutocastScope bf16(cuda, true, torch::kBFloat16);
      EXPECT_EQ(torch::matmul(a, b).scalar_type(), torch::kBFloat16);
    }
    EXPECT_EQ(torch::matmul(a, b).scalar_type(), torch::kHalf) << "the inner scope restores the outer dtype";
  }
  EXPECT_EQ(torch::matmul(a, b).scalar_type(), torch::kFloat32) << "autocast ends with its scope";
}

// The real MobileNetV2 resident on the GPU, served in float16, gives the
// photos the labels and (within 2e-2) the probabilities float32 on CPU gives.
TEST_F(CudaTest, MixedPrecisionPredictionsMatchFloat32OnCpu) {
  auto cpu_zoo = Zoo::Create(ZooAt(graft::testing::WeightsDir(), "cpu"));
  auto gpu_zoo = Zoo::Create(ZooAt(graft::testing::WeightsDir(), "cuda:0"));
  ASSERT_TRUE(cpu_zoo.ok() && gpu_zoo.ok());
  const auto status = (*gpu_zoo)->Get("mobilenet_v2");
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->device, "cuda:0");
  PredictorOptions fp32, mixed;
  fp32.batching.mixed_precision = false;
  mixed.batching.mixed_precision = true;
  const Predictor reference(**cpu_zoo, nullptr, fp32);
  const Predictor served(**gpu_zoo, nullptr, mixed);
  std::vector<ImageInput> photos;
  for (const char* photo : {"dog.jpg", "eagle.jpg", "horses.jpg", "person.jpg"}) {
    photos.push_back({ReadFile(graft::testing::ImagesDir() + "/" + photo).value(), {}});
  }
  const auto want = reference.Predict("mobilenet_v2", photos, 3);
  const auto got = served.Predict("mobilenet_v2", photos, 3);
  ASSERT_TRUE(want.ok()) << want.status();
  ASSERT_TRUE(got.ok()) << got.status();
  for (size_t i = 0; i < photos.size(); ++i) {
    EXPECT_EQ(got->images[i][0].label, want->images[i][0].label) << i;
    EXPECT_NEAR(got->images[i][0].probability, want->images[i][0].probability, 2e-2) << i;
  }
}

}  // namespace
}  // namespace graft::core
