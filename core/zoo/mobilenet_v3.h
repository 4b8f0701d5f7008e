#pragma once

#include "core/zoo/backbone.h"

namespace graft::core {

// torchvision.models.mobilenet_v3_large / _small (width 1.0). Blocks:
// "features.0" ... "features.N" like MobileNetV2.
BackbonePtr MakeMobileNetV3(bool large, int64_t num_classes = 1000);

}  // namespace graft::core
