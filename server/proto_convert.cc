#include "server/proto_convert.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/util/torch_status.h"
#include "server/little_endian.h"

namespace graft::server {

void SetTimestamp(double seconds, google::protobuf::Timestamp* out) {
  if (seconds <= 0) return;
  out->set_seconds(static_cast<int64_t>(seconds));
  out->set_nanos(static_cast<int32_t>((seconds - std::floor(seconds)) * 1e9));
}

void ToProto(const core::Preprocessing& in, v1::Preprocessing* out) {
  out->set_height(in.height);
  out->set_width(in.width);
  out->set_resize_size(in.resize_size);
  for (float m : in.mean) out->add_mean(m);
  for (float s : in.std) out->add_std(s);
  out->set_interpolation(in.interpolation);
}

void ToProto(const core::BackboneStatus& in, v1::Backbone* out) {
  const core::BackboneSpec& spec = *in.spec;
  out->set_name(spec.name);
  for (const auto& a : spec.aliases) out->add_aliases(a);
  out->set_family(spec.family);
  out->set_parameter_count(in.parameter_count);
  ToProto(spec.preprocessing, out->mutable_preprocessing());
  out->set_feature_dim(static_cast<int32_t>(spec.feature_dim));
  for (const auto& b : in.blocks) out->add_blocks(b);
  out->set_num_classes(static_cast<int32_t>(spec.num_classes));
  auto* w = out->mutable_weights();
  w->set_present(in.weights_present);
  w->set_path(in.weights_path);
  w->set_format(in.weights_format);
  w->set_file_name(spec.weights_file);
  w->set_url(spec.weights_url);
  w->set_error(in.load_error);
  out->set_custom(spec.custom);
  auto* r = out->mutable_residency();
  r->set_device(in.device);
  r->set_bytes(in.resident_bytes);
  r->set_load_seconds(in.load_seconds);
  r->set_pinned(in.pinned);
  if (in.last_used > 0) {
    r->mutable_last_used_at()->set_seconds(static_cast<int64_t>(in.last_used));
    r->mutable_last_used_at()->set_nanos(static_cast<int32_t>((in.last_used - std::floor(in.last_used)) * 1e9));
  }
  r->set_users(in.users);
  r->set_evictions(in.evictions);
}

void ToProto(const core::DeviceMemoryUse& in, v1::DeviceMemory* out) {
  out->set_device(in.device);
  out->set_budget_bytes(in.budget);
  out->set_backbone_bytes(in.backbones);
  out->set_model_bytes(in.models);
  out->set_job_bytes(in.jobs);
}

void ToProto(const core::Timing& in, v1::Timing* out) {
  out->set_decode_us(in.decode_us);
  out->set_queue_us(in.queue_us);
  out->set_compute_us(in.compute_us);
  out->set_total_us(in.total_us);
  out->set_batch_images(in.batch_images);
}


absl::StatusOr<std::vector<core::ImageInput>> FromProto(
    const google::protobuf::RepeatedPtrField<v1::ImageInput>& images) {
  std::vector<core::ImageInput> out;
  out.reserve(images.size());
  for (int i = 0; i < images.size(); ++i) {
    const v1::ImageInput& in = images[i];
    core::ImageInput image;
    if (in.has_tensor()) {
      const v1::FloatTensor& t = in.tensor();
      int64_t numel = 1;
      for (int64_t d : t.shape()) {
        if (d <= 0 || d > (int64_t{1} << 20)) {
          return absl::InvalidArgumentError(absl::StrCat("image ", i, ": tensor dimension ", d, " is out of range"));
        }
        numel *= d;
        if (numel > (int64_t{1} << 31)) return absl::InvalidArgumentError(absl::StrCat("image ", i, ": tensor too large"));
      }
      const bool raw = !t.raw_values().empty();
      if (raw && t.values_size() > 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("image ", i, ": tensor has both values and raw_values; send one of them"));
      }
      if (raw && (t.raw_values().size() % sizeof(float) != 0 || t.shape().empty() ||
                  static_cast<int64_t>(t.raw_values().size() / sizeof(float)) != numel)) {
        return absl::InvalidArgumentError(
            absl::StrCat("image ", i, ": tensor raw_values has ", t.raw_values().size(),
                         " bytes but its shape holds ", t.shape().empty() ? 0 : numel, " float32 values (",
                         t.shape().empty() ? 0 : numel * static_cast<int64_t>(sizeof(float)), " bytes)"));
      }
      if (!raw && (t.shape().empty() || numel != t.values_size())) {
        return absl::InvalidArgumentError(absl::StrCat("image ", i, ": tensor has ", t.values_size(),
                                                       " values but its shape holds ", t.shape().empty() ? 0 : numel));
      }
      auto tensor = core::GuardInternal("tensor input", [&]() -> absl::StatusOr<torch::Tensor> {
        torch::Tensor x = torch::empty(std::vector<int64_t>(t.shape().begin(), t.shape().end()), torch::kFloat32);
        if (raw) {
          CopyLittleEndianFloats(t.raw_values().data(), numel, x.data_ptr<float>());
        } else {
          std::memcpy(x.data_ptr<float>(), t.values().data(), sizeof(float) * numel);
        }
        return x;
      });
      if (!tensor.ok()) return tensor.status();
      image.tensor = *tensor;
    } else if (in.has_encoded()) {
      image.encoded = in.encoded();
    } else {
      return absl::InvalidArgumentError(absl::StrCat("image ", i, ": neither encoded bytes nor a tensor"));
    }
    out.push_back(std::move(image));
  }
  return out;
}

}  // namespace graft::server
