#pragma once

#include "core/zoo/backbone.h"

namespace graft::core {

// torchvision.models.mobilenet_v2 (width 1.0). Blocks: "features.0" ...
// "features.18".
BackbonePtr MakeMobileNetV2(int64_t num_classes = 1000);

}  // namespace graft::core
