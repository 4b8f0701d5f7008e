#pragma once

// Little-endian wire values (raw tensor bytes, length prefixes), whatever the
// host's byte order.

#include <cstdint>
#include <cstring>
#include <string>

namespace graft::server {

inline uint32_t LoadLittleEndian32(const char* p) {
  const auto* b = reinterpret_cast<const unsigned char*>(p);
  return uint32_t{b[0]} | uint32_t{b[1]} << 8 | uint32_t{b[2]} << 16 | uint32_t{b[3]} << 24;
}

inline void AppendLittleEndian32(uint32_t v, std::string* out) {
  const char b[4] = {static_cast<char>(v & 0xff), static_cast<char>((v >> 8) & 0xff),
                     static_cast<char>((v >> 16) & 0xff), static_cast<char>((v >> 24) & 0xff)};
  out->append(b, 4);
}

inline float LoadLittleEndianFloat(const char* p) {
  const uint32_t v = LoadLittleEndian32(p);
  float f;
  std::memcpy(&f, &v, 4);
  return f;
}

inline void AppendLittleEndianFloat(float f, std::string* out) {
  uint32_t v;
  std::memcpy(&v, &f, 4);
  AppendLittleEndian32(v, out);
}

// `count` little-endian float32 values from `bytes` into host floats.
inline void CopyLittleEndianFloats(const char* bytes, int64_t count, float* out) {
  if constexpr (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__) {
    std::memcpy(out, bytes, static_cast<size_t>(count) * 4);
  } else {
    for (int64_t k = 0; k < count; ++k) out[k] = LoadLittleEndianFloat(bytes + 4 * k);
  }
}

}  // namespace graft::server
