#pragma once

// The transformer backbones: torchvision's VisionTransformer (ViT-B/16,
// ViT-B/32) and SwinTransformer (Swin-T/S/B), native, torchvision names.

#include <array>
#include <string>

#include "core/zoo/backbone.h"

namespace graft::core {

// Blocks: "stem" (conv_proj, class_token, encoder.pos_embedding), each
// encoder layer, "encoder.ln" (which outputs the class token as [N, D, 1, 1]).
// Inner blocks carry tokens [N, L, D]. An input other than 224x224 gets the
// position embedding resized bicubically, as torchvision does for fine-tuning
// at another resolution.
BackbonePtr MakeViT(int64_t patch, int64_t num_classes = 1000);
// Published key -> module key (older files name the MLP linear_1/linear_2).
std::string ViTKey(const std::string& key);

struct SwinConfig {
  int64_t embed_dim;
  std::array<int64_t, 4> depths, heads;
};
SwinConfig SwinSize(char size);  // 't', 's', 'b'

// Blocks: "features.0" (patch embedding), each Swin block ("features.1.0"
// …), each patch merging, "norm". Blocks hand NCHW maps to each other.
BackbonePtr MakeSwin(const SwinConfig& config, int64_t num_classes = 1000);

}  // namespace graft::core
