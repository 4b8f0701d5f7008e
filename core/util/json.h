#pragma once

// Integers read from JSON files (model.json, manifests, stored job specs).
// nlohmann converts a JSON float to an integer type with a plain cast, which
// is undefined behaviour outside the type's range (found by fuzzing model.json
// and backbone manifests: {"feature_dim": 1e103}); these check the range and
// throw nlohmann's out_of_range, which the readers' exception guards turn into
// a status.

#include <array>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace graft::core {

template <typename T>
T JsonInt(const nlohmann::json& v) {
  static_assert(std::is_integral_v<T>);
  constexpr double lo = static_cast<double>(std::numeric_limits<T>::lowest());
  constexpr double hi = static_cast<double>(std::numeric_limits<T>::max());
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (!(d >= lo && d <= hi)) {
      throw nlohmann::json::out_of_range::create(406, "number " + v.dump() + " is out of range", &v);
    }
    return static_cast<T>(d);
  }
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<T>::max())) {
      throw nlohmann::json::out_of_range::create(406, "number " + v.dump() + " is out of range", &v);
    }
    return static_cast<T>(u);
  }
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (static_cast<double>(i) < lo || static_cast<double>(i) > hi) {
      throw nlohmann::json::out_of_range::create(406, "number " + v.dump() + " is out of range", &v);
    }
    return static_cast<T>(i);
  }
  return v.get<T>();  // not a number: nlohmann's type_error
}

// obj[key] as an integer, `fallback` when absent.
template <typename T>
T JsonInt(const nlohmann::json& obj, const char* key, T fallback) {
  const auto it = obj.find(key);
  return it == obj.end() ? fallback : JsonInt<T>(*it);
}

template <typename T>
std::vector<T> JsonInts(const nlohmann::json& obj, const char* key) {
  std::vector<T> out;
  const auto it = obj.find(key);
  if (it == obj.end()) return out;
  for (const auto& v : it->get_ref<const nlohmann::json::array_t&>()) out.push_back(JsonInt<T>(v));
  return out;
}

// Three floats (a mean or std), each finite and within float's range: a
// double beyond it converts to float with undefined behaviour.
inline std::array<float, 3> JsonFloat3(const nlohmann::json& v) {
  const auto d = v.get<std::array<double, 3>>();
  std::array<float, 3> out{};
  for (size_t i = 0; i < 3; ++i) {
    if (!(std::abs(d[i]) <= static_cast<double>(std::numeric_limits<float>::max()))) {
      throw nlohmann::json::out_of_range::create(406, "number " + v.dump() + " is out of range", &v);
    }
    out[i] = static_cast<float>(d[i]);
  }
  return out;
}

// JSON text for a client: compact, and strings that are not valid UTF-8 (a
// client's own bytes echoed back) get U+FFFD instead of nlohmann throwing.
inline std::string DumpJson(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace graft::core
