#pragma once

// Keras Applications backbones with no torchvision twin, native, with timm's
// parameter names (legacy_xception, inception_resnet_v2) so that timm's
// weights load. Both take 299x299 input scaled to [-1, 1].

#include "core/zoo/backbone.h"

namespace graft::core {

// Blocks: "stem" (conv1, bn1, conv2, bn2), "block1" … "block12", "exit"
// (conv3, bn3, conv4, bn4). Feature dim 2048.
BackbonePtr MakeXception(int64_t num_classes = 1000);

// Blocks: each stem BasicConv2d, mixed_5b, repeat.0 … repeat.9, mixed_6a,
// repeat_1.0 … repeat_1.19, mixed_7a, repeat_2.0 … repeat_2.8, block8,
// conv2d_7b. Feature dim 1536. Batch norms have no scale (gamma), as in
// Keras; timm files' all-ones "bn.weight" are dropped by KerasNativeKey.
BackbonePtr MakeInceptionResNetV2(int64_t num_classes = 1000);

// timm / Cadene file key -> module key ("last_linear" -> "fc"/"classif";
// IRv2's unit bn.weight dropped).
std::string XceptionKey(const std::string& key);
std::string InceptionResNetV2Key(const std::string& key);

// Parameters plus batch-norm running statistics: how Keras counts weights
// (its published parameter counts include the non-trainable moving stats).
int64_t KerasParameterCount(const BackboneImpl& model);

}  // namespace graft::core
