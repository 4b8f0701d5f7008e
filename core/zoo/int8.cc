#include "core/zoo/int8.h"

#include <ATen/Context.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/InferenceMode.h>
#include <torch/nn/functional/pooling.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/util/status_macros.h"
#include "core/util/torch_compat.h"
#include "core/util/torch_status.h"
#include "core/zoo/layers.h"

namespace graft::core {
namespace {

constexpr int kActNone = 0, kActReLU = 1, kActReLU6 = 2;

c10::OperatorHandle QuantizedOp(const char* name, const char* overload) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, overload);
}

std::vector<int64_t> ArrayVec(const torch::ExpandingArray<2>& a) { return {a->at(0), a->at(1)}; }

// One boxed call of a quantized operator; its single result.
c10::IValue Call(const c10::OperatorHandle& op, std::vector<c10::IValue> stack) {
  op.callBoxed(&stack);
  return std::move(stack.at(0));
}

// uint8 scale and zero point covering [lo, hi] (widened to hold 0).
std::pair<double, int64_t> Affine(float lo, float hi) {
  const double l = std::min(0.0, static_cast<double>(lo));
  const double h = std::max(0.0, static_cast<double>(hi));
  const double scale = std::max((h - l) / 255.0, 1e-8);
  const int64_t zp = std::clamp<int64_t>(std::llround(-l / scale), 0, 255);
  return {scale, zp};
}

}  // namespace

std::string Int8Calibration::Fingerprint() const {
  // FNV-1a over the ranges' bits: equal ranges, equal quantization.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  };
  for (const auto& [lo, hi] : ranges) {
    mix(&lo, sizeof lo);
    mix(&hi, sizeof hi);
  }
  return absl::StrFormat("%016x", h);
}

nlohmann::json Int8CalibrationToJson(const Int8Calibration& c) {
  nlohmann::json ranges = nlohmann::json::array();
  for (const auto& [lo, hi] : c.ranges) ranges.push_back({lo, hi});
  return {{"images", c.images}, {"dataset", c.dataset}, {"split", c.split}, {"ranges", std::move(ranges)}};
}

absl::StatusOr<Int8Calibration> Int8CalibrationFromJson(const nlohmann::json& j) {
  return GuardExceptions(absl::StatusCode::kDataLoss, "int8 calibration", [&]() -> absl::StatusOr<Int8Calibration> {
    Int8Calibration c;
    c.images = j.at("images").get<int64_t>();
    c.dataset = j.value("dataset", "");
    c.split = j.value("split", "");
    for (const auto& r : j.at("ranges")) {
      const float lo = r.at(0).get<float>(), hi = r.at(1).get<float>();
      if (!std::isfinite(lo) || !std::isfinite(hi) || lo > hi) {
        return absl::DataLossError(absl::StrCat("int8 calibration range [", lo, ", ", hi, "] is not a range"));
      }
      c.ranges.emplace_back(lo, hi);
    }
    return c;
  });
}

int Int8Graph::BeginBlock() {
  Block b;
  b.input = NewValue();
  b.first_op = ops_.size();
  blocks_.push_back(b);
  return b.input;
}

void Int8Graph::EndBlock(int output) {
  blocks_.back().output = output;
  blocks_.back().end_op = ops_.size();
}

int Int8Graph::Conv(int input, const torch::nn::Conv2d& conv, Activation act) {
  Op op;
  op.kind = Op::Kind::kConv;
  switch (act) {
    case Activation::kNone:
      op.act = kActNone;
      break;
    case Activation::kReLU:
      op.act = kActReLU;
      break;
    case Activation::kReLU6:
      op.act = kActReLU6;
      break;
    default:
      return -1;
  }
  const auto& o = conv->options;
  if (!conv->bias.defined()) return -1;  // not folded
  op.a = input;
  op.weight = conv->weight.detach();
  op.bias = conv->bias.detach();
  op.stride = ArrayVec(o.stride());
  op.padding = ArrayVec(compat::Get<torch::ExpandingArray<2>>(o.padding()));
  op.dilation = ArrayVec(o.dilation());
  op.groups = o.groups();
  return Append(std::move(op));
}

int Int8Graph::Conv(int input, const torch::Tensor& weight, const torch::Tensor& bias, int64_t stride,
                    int64_t padding, Activation act) {
  Op op;
  op.kind = Op::Kind::kConv;
  if (act != Activation::kNone && act != Activation::kReLU && act != Activation::kReLU6) return -1;
  op.act = act == Activation::kNone ? kActNone : act == Activation::kReLU ? kActReLU : kActReLU6;
  op.a = input;
  op.weight = weight.detach();
  op.bias = bias.detach();
  op.stride = {stride, stride};
  op.padding = {padding, padding};
  op.dilation = {1, 1};
  return Append(std::move(op));
}

int Int8Graph::Relu(int input) {
  Op op;
  op.kind = Op::Kind::kRelu;
  op.a = input;
  return Append(std::move(op));
}

int Int8Graph::Cat(std::vector<int> inputs) {
  Op op;
  op.kind = Op::Kind::kCat;
  op.inputs = std::move(inputs);
  return Append(std::move(op));
}

int Int8Graph::Add(int a, int b, bool relu) {
  Op op;
  op.kind = Op::Kind::kAdd;
  op.a = a;
  op.b = b;
  op.relu = relu;
  return Append(std::move(op));
}

int Int8Graph::MaxPool(int input, int64_t kernel, int64_t stride, int64_t padding, bool ceil_mode) {
  Op op;
  op.kind = Op::Kind::kMaxPool;
  op.a = input;
  op.kernel = kernel;
  op.pool_stride = stride;
  op.pool_padding = padding;
  op.ceil_mode = ceil_mode;
  return Append(std::move(op));
}

int Int8Graph::Append(Op op) {
  op.out = NewValue();
  ops_.push_back(std::move(op));
  return ops_.back().out;
}

torch::Tensor Int8Graph::RunFloat(torch::Tensor x, size_t begin, size_t end,
                                  std::vector<std::pair<float, float>>* ranges) const {
  if (ranges == nullptr) return RunFloat(std::move(x), begin, end, ObserveFn());
  return RunFloat(std::move(x), begin, end, [&](int id, const torch::Tensor& t) {
    const auto [lo, hi] = torch::aminmax(t);
    auto& r = (*ranges)[id];
    r.first = std::min(r.first, lo.item<float>());
    r.second = std::max(r.second, hi.item<float>());
  });
}

torch::Tensor Int8Graph::RunFloat(torch::Tensor x, size_t begin, size_t end, const ObserveFn& observe) const {
  std::vector<torch::Tensor> v(values());
  auto record = [&](int id) {
    if (observe) observe(id, v[id]);
  };
  for (size_t bi = begin; bi < end && bi < blocks_.size(); ++bi) {
    const Block& b = blocks_[bi];
    v[b.input] = x;
    record(b.input);
    for (size_t i = b.first_op; i < b.end_op; ++i) {
      const Op& op = ops_[i];
      torch::Tensor y;
      switch (op.kind) {
        case Op::Kind::kConv:
          y = torch::conv2d(v[op.a], op.weight, op.bias, op.stride, op.padding, op.dilation, op.groups);
          if (op.act == kActReLU) y = torch::relu(y);
          if (op.act == kActReLU6) y = torch::hardtanh(y, 0.0, 6.0);
          break;
        case Op::Kind::kAdd:
          y = v[op.a] + v[op.b];
          if (op.relu) y = torch::relu(y);
          break;
        case Op::Kind::kMaxPool:
          y = torch::max_pool2d(v[op.a], {op.kernel, op.kernel}, {op.pool_stride, op.pool_stride},
                                {op.pool_padding, op.pool_padding}, {1, 1}, op.ceil_mode);
          break;
        case Op::Kind::kRelu:
          y = torch::relu(v[op.a]);
          break;
        case Op::Kind::kCat: {
          std::vector<torch::Tensor> parts;
          for (int i : op.inputs) parts.push_back(v[i]);
          y = torch::cat(parts, 1);
          break;
        }
      }
      v[op.out] = y;
      record(op.out);
    }
    x = v[b.output];
    // Values of earlier blocks are not read again.
    std::fill(v.begin(), v.end(), torch::Tensor());
  }
  return x;
}

absl::Status Int8Graph::Quantize(const Int8Calibration& calibration) {
  if (calibration.ranges.size() != values()) {
    return absl::FailedPreconditionError(absl::StrCat("the int8 calibration holds ", calibration.ranges.size(),
                                                      " ranges; this backbone's graph has ", values(),
                                                      " values: calibrate again (graft models optimize)"));
  }
  scale_.assign(values(), 1.0);
  zero_point_.assign(values(), 0);
  for (size_t i = 0; i < values(); ++i) {
    auto [lo, hi] = calibration.ranges[i];
    std::tie(scale_[i], zero_point_[i]) = Affine(lo, hi);
  }
  // A ReLU6 output saturates at 6: its range never needs more.
  for (const Op& op : ops_) {
    if (op.kind == Op::Kind::kConv && op.act == kActReLU6) {
      std::tie(scale_[op.out], zero_point_[op.out]) = Affine(0, std::min(6.0f, calibration.ranges[op.out].second));
    }
  }
  return GuardInternal("int8 weights", [&]() -> absl::Status {
    torch::NoGradGuard no_grad;
    bytes_ = 0;
    for (Op& op : ops_) {
      if (op.kind != Op::Kind::kConv) continue;
      const torch::Tensor w = op.weight.to(torch::kFloat32).contiguous();
      const torch::Tensor scales = (w.abs().amax({1, 2, 3}) / 127.0).clamp_min(1e-8).to(torch::kDouble);
      const torch::Tensor zeros = torch::zeros({w.size(0)}, torch::kLong);
      const torch::Tensor qw = torch::quantize_per_channel(w, scales, zeros, 0, torch::kQInt8);
      op.qweight = qw;
      op.bias = op.bias.to(torch::kFloat32).contiguous();
      op.packed = Pack(op);
      bytes_ += 2 * w.numel() + op.bias.numel() * 4;  // packed and plain
      op.weight = torch::Tensor();
    }
    return absl::OkStatus();
  });
}

c10::IValue Int8Graph::Pack(const Op& op) const {
  static const auto prepack = QuantizedOp("quantized::conv2d_prepack", "");
  return Call(prepack, {op.qweight, op.bias, op.stride, op.padding, op.dilation, op.groups});
}

torch::Tensor Int8Graph::RunConv(const Op& op, const torch::Tensor& x, double scale, int64_t zero_point) const {
  static const auto conv = QuantizedOp("quantized::conv2d", "new");
  static const auto conv_relu = QuantizedOp("quantized::conv2d_relu", "new");
  const auto& kernel = op.act == kActNone ? conv : conv_relu;
  c10::IValue packed;
  {
    absl::MutexLock lock(&pack_mu_);
    packed = op.packed;
  }
  try {
    return Call(kernel, {x, packed, scale, zero_point}).toTensor();
  } catch (const std::exception& e) {  // oneDNN's dnnl::error, not a c10::Error
    if (std::string(e.what()).find("reorder") == std::string::npos) throw;
  }
  // Freshly packed weights take any input shape at their first use.
  packed = Pack(op);
  {
    absl::MutexLock lock(&pack_mu_);
    op.packed = packed;
  }
  return Call(kernel, {x, packed, scale, zero_point}).toTensor();
}

torch::Tensor Int8Graph::RunInt8(torch::Tensor x, size_t begin, size_t end) const {
  static const auto cat = QuantizedOp("quantized::cat", "");
  static const auto add = QuantizedOp("quantized::add", "");
  static const auto add_relu = QuantizedOp("quantized::add_relu", "");
  std::vector<torch::Tensor> v(values());
  for (size_t bi = begin; bi < end && bi < blocks_.size(); ++bi) {
    const Block& b = blocks_[bi];
    if (!x.is_quantized()) {
      x = torch::quantize_per_tensor(x.to(torch::kFloat32).contiguous(torch::MemoryFormat::ChannelsLast),
                                     scale_[b.input], zero_point_[b.input], torch::kQUInt8);
    }
    v[b.input] = x;
    for (size_t i = b.first_op; i < b.end_op; ++i) {
      const Op& op = ops_[i];
      const double s = scale_[op.out];
      const int64_t z = zero_point_[op.out];
      switch (op.kind) {
        case Op::Kind::kConv:
          v[op.out] = RunConv(op, v[op.a], s, z);
          break;
        case Op::Kind::kAdd:
          v[op.out] = Call(op.relu ? add_relu : add, {v[op.a], v[op.b], s, z}).toTensor();
          break;
        case Op::Kind::kMaxPool:
          // Dilation spelled out: the quantized kernel reads both entries.
          v[op.out] = torch::max_pool2d(v[op.a], {op.kernel, op.kernel}, {op.pool_stride, op.pool_stride},
                                        {op.pool_padding, op.pool_padding}, {1, 1}, op.ceil_mode);
          break;
        case Op::Kind::kRelu:  // keeps its input's scale: a ReLU never widens a range
          v[op.out] = torch::relu(v[op.a]);
          break;
        case Op::Kind::kCat: {
          std::vector<torch::Tensor> parts;
          for (int i : op.inputs) parts.push_back(v[i]);
          v[op.out] = Call(cat, {c10::List<torch::Tensor>(parts), int64_t{1}, s, z}).toTensor();
          break;
        }
      }
    }
    x = v[b.output];
    std::fill(v.begin(), v.end(), torch::Tensor());
  }
  return x;
}

namespace {

constexpr int64_t kBins = 2048;

// The part [l, h] of a value's histogram over [lo, hi] (counts in `bins`)
// that uint8 represents with the least squared error: rounding inside,
// clipping outside.
std::pair<float, float> BestRange(const std::vector<double>& bins, float lo, float hi) {
  const double width = (static_cast<double>(hi) - lo) / kBins;
  if (width <= 0) return {lo, hi};
  const auto error = [&](double l, double h) {
    const double delta = (std::max(h, 0.0) - std::min(l, 0.0)) / 255.0;
    double e = 0;
    for (int64_t i = 0; i < kBins; ++i) {
      if (bins[i] == 0) continue;
      const double c = lo + (i + 0.5) * width;
      const double d = c < l ? l - c : c > h ? c - h : 0;
      e += bins[i] * (d > 0 ? d * d : delta * delta / 12);
    }
    return e;
  };
  std::pair<float, float> best{lo, hi};
  double best_error = error(lo, hi);
  // Each end moved inwards in steps of 1/kSteps of the span (an end at 0 stays).
  constexpr int kSteps = 64;
  for (int a = 0; a < kSteps; ++a) {
    for (int b = 0; a + b < kSteps; ++b) {
      if ((a == 0 && b == 0) || (a > 0 && lo >= 0) || (b > 0 && hi <= 0)) continue;
      const double l = lo + a * (hi - lo) / kSteps, h = hi - b * (hi - lo) / kSteps;
      const double e = error(l, h);
      if (e < best_error) {
        best_error = e;
        best = {static_cast<float>(l), static_cast<float>(h)};
      }
    }
  }
  return best;
}

}  // namespace

absl::StatusOr<Int8Calibration> CalibrateGraph(const Int8Graph& graph, const std::vector<torch::Tensor>& batches) {
  Int8Calibration out;
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<std::pair<float, float>> seen(graph.values(), {inf, -inf});
  RETURN_IF_ERROR(GuardInternal("int8 calibration", [&]() -> absl::Status {
    c10::InferenceMode guard;
    for (const torch::Tensor& b : batches) {
      graph.RunFloat(b.to(torch::kFloat32), 0, graph.blocks(), &seen);
      out.images += b.size(0);
    }
    if (out.images == 0) return absl::OkStatus();
    // Second pass: each value's histogram over what the first saw.
    std::vector<std::vector<double>> hist(graph.values(), std::vector<double>(kBins, 0.0));
    for (const torch::Tensor& b : batches) {
      graph.RunFloat(b.to(torch::kFloat32), 0, graph.blocks(), [&](int id, const torch::Tensor& t) {
        const auto [lo, hi] = seen[id];
        if (!(hi > lo)) return;
        const torch::Tensor h = torch::histc(t.to(torch::kFloat32), kBins, lo, hi).to(torch::kDouble).contiguous();
        const double* p = h.data_ptr<double>();
        for (int64_t i = 0; i < kBins; ++i) hist[id][i] += p[i];
      });
    }
    out.ranges.resize(graph.values());
    for (size_t id = 0; id < graph.values(); ++id) {
      const auto [lo, hi] = seen[id];
      out.ranges[id] = std::isfinite(lo) && hi > lo ? BestRange(hist[id], lo, hi) : std::pair<float, float>{0.0f, 0.0f};
    }
    return absl::OkStatus();
  }));
  if (out.images == 0) return absl::InvalidArgumentError("int8 calibration needs at least one image");
  return out;
}

absl::StatusOr<std::unique_ptr<Int8Graph>> LowerTrunk(BackboneImpl& folded, const std::string& name) {
  auto graph = std::make_unique<Int8Graph>();
  for (size_t i = 0; i < folded.blocks().size(); ++i) {
    const int in = graph->BeginBlock();
    int out = -1;
    if (!folded.LowerBlock(i, *graph, in, &out) || out < 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "backbone '", name, "' has no int8 form (block '", folded.blocks()[i].name,
          "'): int8 covers ResNet, MobileNetV2, VGG, AlexNet and SqueezeNet; serve it in bf16 or fp32"));
    }
    graph->EndBlock(out);
  }
  return graph;
}

absl::Status SelectInt8Engine() {
  static const absl::Status selected = []() -> absl::Status {
    const auto& engines = at::globalContext().supportedQEngines();
    for (const at::QEngine e : {at::QEngine::ONEDNN, at::QEngine::X86, at::QEngine::FBGEMM}) {
      if (std::find(engines.begin(), engines.end(), e) != engines.end()) {
        at::globalContext().setQEngine(e);
        return absl::OkStatus();
      }
    }
    return absl::FailedPreconditionError(
        "int8 needs LibTorch's quantized engine onednn, x86 or fbgemm; this LibTorch has none of them");
  }();
  return selected;
}

Int8TrunkImpl::Int8TrunkImpl(std::vector<BlockInfo> blocks, std::unique_ptr<Int8Graph> graph)
    : graph_(std::move(graph)) {
  blocks_ = std::move(blocks);
}

torch::Tensor Int8TrunkImpl::ForwardHead(const torch::Tensor&) {
  throw std::logic_error("an int8 trunk has no classifier: the float32 backbone's classifies");
}

}  // namespace graft::core
