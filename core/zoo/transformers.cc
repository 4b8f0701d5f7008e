#include "core/zoo/transformers.h"

#include <torch/nn/functional/padding.h>
#include <torch/nn/functional/upsampling.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/zoo/layers.h"

namespace graft::core {
namespace {

namespace F = torch::nn::functional;

torch::nn::LayerNorm MakeLayerNorm(int64_t dim, double eps) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(eps));
}

// torchvision's MLP block: "0" Linear, GELU, "3" Linear (dropouts are
// identities in eval mode and hold no parameters).
class Mlp : public torch::nn::Module {
 public:
  Mlp(int64_t dim, int64_t hidden) {
    fc1_ = register_module("0", torch::nn::Linear(dim, hidden));
    fc2_ = register_module("3", torch::nn::Linear(hidden, dim));
  }
  torch::Tensor forward(const torch::Tensor& x) { return fc2_->forward(torch::gelu(fc1_->forward(x))); }

 private:
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
};

// ---- ViT ----

// nn.MultiheadAttention (batch first, self-attention): "in_proj_weight",
// "in_proj_bias", "out_proj".
class SelfAttention : public torch::nn::Module {
 public:
  SelfAttention(int64_t dim, int64_t heads) : heads_(heads) {
    in_w_ = register_parameter("in_proj_weight", torch::empty({3 * dim, dim}).normal_(0, 0.02));
    in_b_ = register_parameter("in_proj_bias", torch::zeros({3 * dim}));
    out_ = register_module("out_proj", torch::nn::Linear(dim, dim));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    const int64_t n = x.size(0), l = x.size(1), d = x.size(2), hd = d / heads_;
    const auto qkv = F::linear(x, in_w_, in_b_).view({n, l, 3, heads_, hd}).permute({2, 0, 3, 1, 4});
    const torch::Tensor q = qkv[0] / std::sqrt(static_cast<double>(hd));
    const torch::Tensor attn = torch::softmax(q.matmul(qkv[1].transpose(-2, -1)), -1);
    return out_->forward(attn.matmul(qkv[2]).transpose(1, 2).reshape({n, l, d}));
  }

 private:
  int64_t heads_;
  torch::Tensor in_w_, in_b_;
  torch::nn::Linear out_{nullptr};
};

// EncoderBlock: "ln_1", "self_attention", "ln_2", "mlp" (pre-norm residuals).
class EncoderBlock : public UnaryModule {
 public:
  EncoderBlock(int64_t dim, int64_t heads, int64_t mlp_dim) {
    ln1_ = register_module("ln_1", MakeLayerNorm(dim, 1e-6));
    attn_ = register_module("self_attention", std::make_shared<SelfAttention>(dim, heads));
    ln2_ = register_module("ln_2", MakeLayerNorm(dim, 1e-6));
    mlp_ = register_module("mlp", std::make_shared<Mlp>(dim, mlp_dim));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    const torch::Tensor y = x + attn_->forward(ln1_->forward(x));
    return y + mlp_->forward(ln2_->forward(y));
  }

 private:
  torch::nn::LayerNorm ln1_{nullptr}, ln2_{nullptr};
  std::shared_ptr<SelfAttention> attn_;
  std::shared_ptr<Mlp> mlp_;
};

class ViTImpl : public BackboneImpl {
 public:
  ViTImpl(int64_t patch, int64_t num_classes) {
    constexpr int64_t kDim = 768, kLayers = 12, kHeads = 12, kMlp = 3072, kImage = 224;
    conv_proj_ = register_module("conv_proj", MakeConv(3, kDim, patch, patch, 0, 1, true));
    class_token_ = register_parameter("class_token", torch::zeros({1, 1, kDim}));
    auto encoder = register_module("encoder", std::make_shared<torch::nn::Module>());
    const int64_t tokens = (kImage / patch) * (kImage / patch) + 1;
    pos_ = encoder->register_parameter("pos_embedding", torch::empty({1, tokens, kDim}).normal_(0, 0.02));
    blocks_.push_back({"stem", {"conv_proj.", "class_token", "encoder.pos_embedding"}});
    auto layers = encoder->register_module("layers", std::make_shared<torch::nn::Module>());
    for (int64_t i = 0; i < kLayers; ++i) {
      const std::string name = absl::StrCat("encoder_layer_", i);
      layers_.push_back(layers->register_module(name, std::make_shared<EncoderBlock>(kDim, kHeads, kMlp)));
      blocks_.push_back({"encoder.layers." + name, {"encoder.layers." + name + "."}});
    }
    ln_ = encoder->register_module("ln", MakeLayerNorm(kDim, 1e-6));
    blocks_.push_back({"encoder.ln", {"encoder.ln."}});
    auto heads = register_module("heads", std::make_shared<torch::nn::Module>());
    head_ = heads->register_module("head", torch::nn::Linear(kDim, num_classes));
  }

  torch::Tensor ForwardHead(const torch::Tensor& fmap) override { return head_->forward(Pool(fmap)); }

 protected:
  torch::Tensor ForwardBlock(size_t i, const torch::Tensor& x) override {
    if (i == 0) {
      const torch::Tensor patches = conv_proj_->forward(x);  // [N, D, h, w]
      const int64_t n = patches.size(0), h = patches.size(2), w = patches.size(3);
      const torch::Tensor tokens = patches.flatten(2).transpose(1, 2);
      return torch::cat({class_token_.expand({n, -1, -1}), tokens}, 1) + PositionEmbedding(h, w);
    }
    if (i <= layers_.size()) return layers_[i - 1]->forward(x);
    const torch::Tensor cls = ln_->forward(x).select(1, 0);
    return cls.unsqueeze(-1).unsqueeze(-1);
  }

 private:
  // The learned embedding for a 14x14 (7x7) grid, resized for another grid.
  torch::Tensor PositionEmbedding(int64_t h, int64_t w) const {
    const int64_t grid = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(pos_.size(1) - 1))));
    if (h == grid && w == grid) return pos_;
    const torch::Tensor cls = pos_.narrow(1, 0, 1);
    torch::Tensor grid_pos = pos_.narrow(1, 1, grid * grid).reshape({1, grid, grid, -1}).permute({0, 3, 1, 2});
    grid_pos = F::interpolate(grid_pos, F::InterpolateFuncOptions()
                                            .size(std::vector<int64_t>{h, w})
                                            .mode(torch::kBicubic)
                                            .align_corners(true));
    return torch::cat({cls, grid_pos.flatten(2).transpose(1, 2)}, 1);
  }

  torch::nn::Conv2d conv_proj_{nullptr};
  torch::Tensor class_token_, pos_;
  std::vector<std::shared_ptr<EncoderBlock>> layers_;
  torch::nn::LayerNorm ln_{nullptr};
  torch::nn::Linear head_{nullptr};
};

// ---- Swin ----

constexpr int64_t kWindow = 7;

// ShiftedWindowAttention: "qkv", "proj", "relative_position_bias_table" and
// the buffer "relative_position_index"; windows of 7x7, shifted by 3 on odd
// blocks, the feature map padded up to whole windows.
class WindowAttention : public torch::nn::Module {
 public:
  WindowAttention(int64_t dim, int64_t heads, int64_t shift) : heads_(heads), shift_(shift) {
    qkv_ = register_module("qkv", torch::nn::Linear(dim, 3 * dim));
    proj_ = register_module("proj", torch::nn::Linear(dim, dim));
    table_ = register_parameter("relative_position_bias_table",
                                torch::zeros({(2 * kWindow - 1) * (2 * kWindow - 1), heads}));
    const torch::Tensor coords = torch::stack(torch::meshgrid({torch::arange(kWindow), torch::arange(kWindow)}, "ij")).flatten(1);
    torch::Tensor rel = (coords.unsqueeze(2) - coords.unsqueeze(1)).permute({1, 2, 0}).contiguous();
    rel.select(2, 0).add_(kWindow - 1).mul_(2 * kWindow - 1);
    rel.select(2, 1).add_(kWindow - 1);
    index_ = register_buffer("relative_position_index", rel.sum(-1).flatten());
  }

  torch::Tensor forward(const torch::Tensor& input) {  // [B, H, W, C]
    const int64_t b = input.size(0), h = input.size(1), w = input.size(2), c = input.size(3);
    const int64_t pad_r = (kWindow - w % kWindow) % kWindow, pad_b = (kWindow - h % kWindow) % kWindow;
    torch::Tensor x = F::pad(input, F::PadFuncOptions({0, 0, 0, pad_r, 0, pad_b}));
    const int64_t ph = x.size(1), pw = x.size(2);
    const int64_t shift_h = kWindow >= ph ? 0 : shift_, shift_w = kWindow >= pw ? 0 : shift_;
    const bool shifted = shift_h + shift_w > 0;
    if (shifted) x = torch::roll(x, {-shift_h, -shift_w}, {1, 2});
    const int64_t nh = ph / kWindow, nw = pw / kWindow, windows = nh * nw, area = kWindow * kWindow;
    x = x.view({b, nh, kWindow, nw, kWindow, c}).permute({0, 1, 3, 2, 4, 5}).reshape({b * windows, area, c});
    const auto qkv = qkv_->forward(x).reshape({x.size(0), area, 3, heads_, c / heads_}).permute({2, 0, 3, 1, 4});
    const torch::Tensor q = qkv[0] * std::pow(static_cast<double>(c / heads_), -0.5);
    torch::Tensor attn = q.matmul(qkv[1].transpose(-2, -1));
    attn = attn + table_.index_select(0, index_).view({area, area, -1}).permute({2, 0, 1}).unsqueeze(0);
    if (shifted) {
      attn = attn.view({b, windows, heads_, area, area}) + Mask(ph, pw, shift_h, shift_w, x.options()).unsqueeze(1).unsqueeze(0);
      attn = attn.view({-1, heads_, area, area});
    }
    x = proj_->forward(torch::softmax(attn, -1).matmul(qkv[2]).transpose(1, 2).reshape({x.size(0), area, c}));
    x = x.view({b, nh, nw, kWindow, kWindow, c}).permute({0, 1, 3, 2, 4, 5}).reshape({b, ph, pw, c});
    if (shifted) x = torch::roll(x, {shift_h, shift_w}, {1, 2});
    return x.narrow(1, 0, h).narrow(2, 0, w).contiguous();
  }

 private:
  // -100 between tokens that the cyclic shift brought together from
  // different regions, per window: [windows, area, area].
  static torch::Tensor Mask(int64_t ph, int64_t pw, int64_t sh, int64_t sw, const torch::TensorOptions& options) {
    torch::Tensor m = torch::zeros({ph, pw}, options);
    const std::array<std::pair<int64_t, int64_t>, 3> hs = {{{0, ph - kWindow}, {ph - kWindow, ph - sh}, {ph - sh, ph}}};
    const std::array<std::pair<int64_t, int64_t>, 3> ws = {{{0, pw - kWindow}, {pw - kWindow, pw - sw}, {pw - sw, pw}}};
    int region = 0;
    for (const auto& [h0, h1] : hs) {
      for (const auto& [w0, w1] : ws) {
        if (h1 > h0 && w1 > w0) m.narrow(0, h0, h1 - h0).narrow(1, w0, w1 - w0).fill_(region);
        ++region;
      }
    }
    m = m.view({ph / kWindow, kWindow, pw / kWindow, kWindow}).permute({0, 2, 1, 3}).reshape({-1, kWindow * kWindow});
    const torch::Tensor diff = m.unsqueeze(1) - m.unsqueeze(2);
    return torch::zeros_like(diff).masked_fill(diff != 0, -100.0);
  }

  int64_t heads_, shift_;
  torch::nn::Linear qkv_{nullptr}, proj_{nullptr};
  torch::Tensor table_, index_;
};

// Blocks take and return NCHW maps and work channels-last inside.
class SwinBlock : public UnaryModule {
 public:
  SwinBlock(int64_t dim, int64_t heads, int64_t shift) {
    norm1_ = register_module("norm1", MakeLayerNorm(dim, 1e-5));
    attn_ = register_module("attn", std::make_shared<WindowAttention>(dim, heads, shift));
    norm2_ = register_module("norm2", MakeLayerNorm(dim, 1e-5));
    mlp_ = register_module("mlp", std::make_shared<Mlp>(dim, 4 * dim));
  }
  torch::Tensor forward(const torch::Tensor& nchw) override {
    const torch::Tensor x = nchw.permute({0, 2, 3, 1});
    const torch::Tensor y = x + attn_->forward(norm1_->forward(x));
    return (y + mlp_->forward(norm2_->forward(y))).permute({0, 3, 1, 2});
  }

 private:
  torch::nn::LayerNorm norm1_{nullptr}, norm2_{nullptr};
  std::shared_ptr<WindowAttention> attn_;
  std::shared_ptr<Mlp> mlp_;
};

// PatchMerging: 2x2 neighbours concatenated (padded to even sizes), "norm",
// "reduction" (no bias) to twice the channels.
class PatchMerging : public UnaryModule {
 public:
  explicit PatchMerging(int64_t dim) {
    reduction_ = register_module("reduction", torch::nn::Linear(torch::nn::LinearOptions(4 * dim, 2 * dim).bias(false)));
    norm_ = register_module("norm", MakeLayerNorm(4 * dim, 1e-5));
  }
  torch::Tensor forward(const torch::Tensor& nchw) override {
    torch::Tensor x = nchw.permute({0, 2, 3, 1});
    x = F::pad(x, F::PadFuncOptions({0, 0, 0, x.size(2) % 2, 0, x.size(1) % 2}));
    using torch::indexing::Slice;
    using torch::indexing::None;
    const auto even = Slice(0, None, 2), odd = Slice(1, None, 2);
    x = torch::cat({x.index({Slice(), even, even}), x.index({Slice(), odd, even}), x.index({Slice(), even, odd}),
                    x.index({Slice(), odd, odd})},
                   -1);
    return reduction_->forward(norm_->forward(x)).permute({0, 3, 1, 2});
  }

 private:
  torch::nn::Linear reduction_{nullptr};
  torch::nn::LayerNorm norm_{nullptr};
};

// features.0: "0" 4x4 patch convolution, "2" LayerNorm.
class PatchEmbed : public UnaryModule {
 public:
  explicit PatchEmbed(int64_t dim) {
    conv_ = register_module("0", MakeConv(3, dim, 4, 4, 0, 1, true));
    norm_ = register_module("2", MakeLayerNorm(dim, 1e-5));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    return norm_->forward(conv_->forward(x).permute({0, 2, 3, 1})).permute({0, 3, 1, 2});
  }

 private:
  torch::nn::Conv2d conv_{nullptr};
  torch::nn::LayerNorm norm_{nullptr};
};

class SwinImpl : public BlockListBackbone {
 public:
  SwinImpl(const SwinConfig& c, int64_t num_classes) {
    auto features = register_module("features", std::make_shared<torch::nn::Module>());
    AddBlock(*features, "0", "features.0", std::make_shared<PatchEmbed>(c.embed_dim));
    int index = 1;
    int64_t dim = c.embed_dim;
    for (size_t s = 0; s < 4; ++s) {
      auto stage = features->register_module(std::to_string(index), std::make_shared<torch::nn::Module>());
      for (int64_t i = 0; i < c.depths[s]; ++i) {
        AddBlock(*stage, std::to_string(i), absl::StrCat("features.", index, ".", i),
            std::make_shared<SwinBlock>(dim, c.heads[s], i % 2 == 0 ? 0 : kWindow / 2));
      }
      ++index;
      if (s + 1 < 4) {
        AddBlock(*features, std::to_string(index), absl::StrCat("features.", index), std::make_shared<PatchMerging>(dim));
        ++index;
        dim *= 2;
      }
    }
    norm_ = register_module("norm", MakeLayerNorm(dim, 1e-5));
    blocks_.push_back({"norm", {"norm."}});
    head_ = register_module("head", torch::nn::Linear(dim, num_classes));
  }

  torch::Tensor ForwardHead(const torch::Tensor& fmap) override { return head_->forward(Pool(fmap)); }

 protected:
  torch::Tensor ForwardBlock(size_t i, const torch::Tensor& x) override {
    if (i < block_module_count()) return BlockListBackbone::ForwardBlock(i, x);
    return norm_->forward(x.permute({0, 2, 3, 1})).permute({0, 3, 1, 2});
  }

 private:
  torch::nn::LayerNorm norm_{nullptr};
  torch::nn::Linear head_{nullptr};
};

}  // namespace

BackbonePtr MakeViT(int64_t patch, int64_t num_classes) { return std::make_shared<ViTImpl>(patch, num_classes); }

std::string ViTKey(const std::string& key) {
  std::string k = key;
  for (const auto& [old_name, name] : {std::pair<const char*, const char*>{".mlp.linear_1.", ".mlp.0."},
                                       std::pair<const char*, const char*>{".mlp.linear_2.", ".mlp.3."}}) {
    const size_t at = k.find(old_name);
    if (at != std::string::npos) k.replace(at, std::string(old_name).size(), name);
  }
  return k;
}

SwinConfig SwinSize(char size) {
  if (size == 't') return {96, {2, 2, 6, 2}, {3, 6, 12, 24}};
  if (size == 's') return {96, {2, 2, 18, 2}, {3, 6, 12, 24}};
  return {128, {2, 2, 18, 2}, {4, 8, 16, 32}};
}

BackbonePtr MakeSwin(const SwinConfig& config, int64_t num_classes) {
  return std::make_shared<SwinImpl>(config, num_classes);
}

}  // namespace graft::core
