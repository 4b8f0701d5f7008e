#pragma once

#include <array>

#include "core/zoo/backbone.h"

namespace graft::core {

struct ResNetConfig {
  bool bottleneck = false;             // BasicBlock (18/34) or Bottleneck (50+)
  std::array<int64_t, 4> layers{};     // residual blocks per stage
  int64_t groups = 1;                  // ResNeXt
  int64_t width_per_group = 64;        // Wide ResNet / ResNeXt
  int64_t num_classes = 1000;
};

// torchvision.models.ResNet. Blocks: "stem" (conv1, bn1, relu, maxpool), then
// every residual block "layer1.0" ... "layer4.N".
BackbonePtr MakeResNet(const ResNetConfig& config);

}  // namespace graft::core
