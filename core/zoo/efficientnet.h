#pragma once

#include "core/zoo/backbone.h"

namespace graft::core {

// One stage of torchvision's EfficientNet: `layers` MBConv (or FusedMBConv)
// blocks, the first with `stride` and `in` channels.
struct EfficientNetStage {
  bool fused;
  int64_t expand, kernel, stride, in, out, layers;
};

struct EfficientNetConfig {
  std::vector<EfficientNetStage> stages;  // before width/depth scaling
  double width_mult = 1.0, depth_mult = 1.0;
  int64_t last_channel = 0;  // 0: 4 x the last stage's output
  double bn_eps = 1e-5;      // V2: 1e-3
  double dropout = 0.2;
};

// efficientnet_b0 ... b7 and efficientnet_v2_s/m/l.
EfficientNetConfig EfficientNetB(int variant);
EfficientNetConfig EfficientNetV2(char size);

// Blocks: "features.0" (stem), every MBConv "features.S.I", "features.N" (head conv).
BackbonePtr MakeEfficientNet(const EfficientNetConfig& config, int64_t num_classes = 1000);

}  // namespace graft::core
