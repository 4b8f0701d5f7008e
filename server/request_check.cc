#include "server/request_check.h"

#include <atomic>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/util/limit_error.h"

namespace graft::server {
namespace {

std::atomic<int64_t> g_max_string_field_bytes{4096};

absl::Status TooLong(const std::string& path, size_t size, int64_t max_bytes) {
  return core::LimitError(absl::StatusCode::kInvalidArgument,
                          absl::StrCat(path, " is ", size, " bytes long; a string field may be at most ", max_bytes,
                                       " bytes (--max_string_field_bytes)"),
                          "max_string_field_bytes");
}

absl::Status Check(const google::protobuf::Message& message, int64_t max_bytes, const std::string& prefix) {
  using google::protobuf::FieldDescriptor;
  const google::protobuf::Reflection* reflection = message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);  // only the fields set: linear in the message
  for (const FieldDescriptor* field : fields) {
    const std::string path = prefix.empty() ? field->name() : absl::StrCat(prefix, ".", field->name());
    if (field->type() == FieldDescriptor::TYPE_STRING) {
      if (field->is_repeated()) {
        const int n = reflection->FieldSize(message, field);
        for (int i = 0; i < n; ++i) {
          std::string scratch;
          const std::string& value = reflection->GetRepeatedStringReference(message, field, i, &scratch);
          if (static_cast<int64_t>(value.size()) > max_bytes) {
            return TooLong(absl::StrCat(path, "[", i, "]"), value.size(), max_bytes);
          }
        }
      } else {
        std::string scratch;
        const std::string& value = reflection->GetStringReference(message, field, &scratch);
        if (static_cast<int64_t>(value.size()) > max_bytes) return TooLong(path, value.size(), max_bytes);
      }
    } else if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (field->is_repeated()) {
        const int n = reflection->FieldSize(message, field);
        for (int i = 0; i < n; ++i) {
          const auto& element = reflection->GetRepeatedMessage(message, field, i);
          // A map entry names its key rather than its position.
          std::string where = absl::StrCat(path, "[", i, "]");
          if (field->is_map()) {
            const FieldDescriptor* key = element.GetDescriptor()->FindFieldByName("key");
            if (key != nullptr && key->type() == FieldDescriptor::TYPE_STRING) {
              const std::string k = element.GetReflection()->GetString(element, key);
              if (static_cast<int64_t>(k.size()) > max_bytes) return TooLong(absl::StrCat(path, " key"), k.size(), max_bytes);
              where = absl::StrCat(path, "[\"", k, "\"]");
            }
          }
          if (absl::Status s = Check(element, max_bytes, where); !s.ok()) return s;
        }
      } else {
        if (absl::Status s = Check(reflection->GetMessage(message, field), max_bytes, path); !s.ok()) return s;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckStringFields(const google::protobuf::Message& message, int64_t max_bytes) {
  return Check(message, max_bytes, "");
}

void SetMaxStringFieldBytes(int64_t max_bytes) { g_max_string_field_bytes = max_bytes; }
int64_t MaxStringFieldBytes() { return g_max_string_field_bytes.load(); }

std::string RoutingKeyOf(const grpc::ServerContext& context) {
  const auto& metadata = context.client_metadata();
  const auto found = metadata.find(kRoutingKeyHeader);
  if (found == metadata.end()) return "";
  return std::string(found->second.data(), found->second.size());
}

}  // namespace graft::server
