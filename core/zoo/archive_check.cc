#include "core/zoo/archive_check.h"

#include <caffe2/serialize/versions.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"

namespace graft::core {

// One central-directory record. Outside the anonymous namespace: TorchZip::Impl
// (a member of a named class) holds them.
struct ZipRecord {
  std::string name;
  int method = 0;
  int flags = 0;
  uint32_t crc = 0;
  uint64_t compressed = 0, size = 0, offset = 0;
};

namespace {

// ---- zip -------------------------------------------------------------------

uint64_t Le(const std::string& b, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(b[at + i])) << (8 * i);
  return v;
}

absl::StatusOr<std::string> ReadAt(std::ifstream& in, uint64_t offset, uint64_t n) {
  std::string out(n, '\0');
  in.clear();
  in.seekg(static_cast<std::streamoff>(offset));
  in.read(out.data(), static_cast<std::streamsize>(n));
  if (static_cast<uint64_t>(in.gcount()) != n) return absl::InvalidArgumentError("zip: truncated");
  return out;
}

absl::StatusOr<std::vector<ZipRecord>> Directory(std::ifstream& in, uint64_t file_size, const ArchiveLimits& limits) {
  const uint64_t tail_size = std::min<uint64_t>(file_size, 65535 + 22);
  ASSIGN_OR_RETURN(const std::string tail, ReadAt(in, file_size - tail_size, tail_size));
  size_t eocd = std::string::npos;
  for (size_t i = tail.size() >= 22 ? tail.size() - 22 + 1 : 0; i-- > 0;) {
    if (Le(tail, i, 4) == 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd == std::string::npos) return absl::InvalidArgumentError("not a zip archive (no end of central directory)");
  uint64_t entries = Le(tail, eocd + 10, 2), cd_size = Le(tail, eocd + 12, 4), cd_offset = Le(tail, eocd + 16, 4);
  const uint64_t eocd_at = file_size - tail_size + eocd;
  // A zip64 locator, when there is one, is what counts (as for LibTorch's
  // miniz, which reads the zip64 record whenever the locator is there).
  if (eocd_at >= 20) {
    ASSIGN_OR_RETURN(const std::string locator, ReadAt(in, eocd_at - 20, 20));
    if (Le(locator, 0, 4) == 0x07064b50) {
      const uint64_t at = Le(locator, 8, 8);
      if (at > file_size || file_size - at < 56) return absl::InvalidArgumentError("zip: bad zip64 locator");
      ASSIGN_OR_RETURN(const std::string z64, ReadAt(in, at, 56));
      if (Le(z64, 0, 4) != 0x06064b50) return absl::InvalidArgumentError("zip: bad zip64 directory");
      entries = Le(z64, 32, 8);
      cd_size = Le(z64, 40, 8);
      cd_offset = Le(z64, 48, 8);
    }
  }
  if (entries > static_cast<uint64_t>(limits.max_records)) {
    return absl::InvalidArgumentError(absl::StrCat("zip: ", entries, " records, more than ", limits.max_records));
  }
  if (cd_offset > file_size || cd_size > file_size - cd_offset) {
    return absl::InvalidArgumentError("zip: the central directory lies outside the file");
  }
  ASSIGN_OR_RETURN(const std::string cd, ReadAt(in, cd_offset, cd_size));
  std::vector<ZipRecord> records;
  size_t p = 0;
  for (uint64_t i = 0; i < entries; ++i) {
    if (cd.size() - p < 46 || Le(cd, p, 4) != 0x02014b50) return absl::InvalidArgumentError("zip: bad directory entry");
    ZipRecord r;
    r.method = static_cast<int>(Le(cd, p + 10, 2));
    r.crc = static_cast<uint32_t>(Le(cd, p + 16, 4));
    r.flags = static_cast<int>(Le(cd, p + 8, 2));
    r.compressed = Le(cd, p + 20, 4);
    r.size = Le(cd, p + 24, 4);
    const size_t name_len = Le(cd, p + 28, 2), extra_len = Le(cd, p + 30, 2), comment_len = Le(cd, p + 32, 2);
    r.offset = Le(cd, p + 42, 4);
    if (cd.size() - p - 46 < name_len + extra_len + comment_len) return absl::InvalidArgumentError("zip: bad entry");
    r.name = cd.substr(p + 46, name_len);
    // zip64 sizes and offset, in this order, for the fields that overflowed.
    for (size_t e = p + 46 + name_len; e + 4 <= p + 46 + name_len + extra_len;) {
      const uint64_t id = Le(cd, e, 2), len = Le(cd, e + 2, 2);
      if (e + 4 + len > p + 46 + name_len + extra_len) break;
      if (id == 1) {
        size_t f = e + 4;
        for (uint64_t* field : {&r.size, &r.compressed, &r.offset}) {
          if (*field == 0xffffffff && f + 8 <= e + 4 + len) {
            *field = Le(cd, f, 8);
            f += 8;
          }
        }
      }
      e += 4 + len;
    }
    p += 46 + name_len + extra_len + comment_len;
    records.push_back(std::move(r));
  }
  return records;
}

absl::StatusOr<std::string> RecordBytes(std::ifstream& in, uint64_t file_size, const ZipRecord& r) {
  if (r.offset > file_size || file_size - r.offset < 30) return absl::InvalidArgumentError("zip: bad local header");
  ASSIGN_OR_RETURN(const std::string local, ReadAt(in, r.offset, 30));
  if (Le(local, 0, 4) != 0x04034b50) return absl::InvalidArgumentError("zip: bad local header");
  const uint64_t start = r.offset + 30 + Le(local, 26, 2) + Le(local, 28, 2);
  if (start > file_size || r.compressed > file_size - start) {
    return absl::InvalidArgumentError(absl::StrCat("zip: record ", r.name, " runs past the end of the file"));
  }
  ASSIGN_OR_RETURN(std::string raw, ReadAt(in, start, r.compressed));
  const auto crc_ok = [&](const std::string& data) {
    return crc32_z(0L, reinterpret_cast<const Bytef*>(data.data()), data.size()) == r.crc;
  };
  if (r.method == 0) {
    if (r.compressed != r.size) return absl::InvalidArgumentError(absl::StrCat("zip: record ", r.name, " sizes differ"));
    if (!crc_ok(raw)) return absl::InvalidArgumentError(absl::StrCat("zip: record ", r.name, " fails its CRC"));
    return raw;
  }
  // Deflate, inflated to at most the size the directory declares (checked
  // against the limits before this is called). The output grows with what
  // actually inflates: a declared size is a claim, and allocating it up front
  // let a 1 KB file claim gigabytes (found by fuzzing).
  std::string out;
  z_stream z{};
  if (inflateInit2(&z, -MAX_WBITS) != Z_OK) return absl::InternalError("zlib");
  z.next_in = reinterpret_cast<Bytef*>(raw.data());
  z.avail_in = static_cast<uInt>(raw.size());
  int rc = Z_OK;
  while (rc == Z_OK && out.size() <= r.size) {
    const size_t have = out.size();
    const size_t room = std::min<uint64_t>(std::max<uint64_t>(have, 64 << 10), r.size + 1 - have);
    out.resize(have + room);
    z.next_out = reinterpret_cast<Bytef*>(out.data() + have);
    z.avail_out = static_cast<uInt>(room);
    rc = inflate(&z, Z_NO_FLUSH);
    out.resize(have + room - z.avail_out);
    if (rc == Z_BUF_ERROR && z.avail_in == 0) break;  // input ended before the stream did
  }
  const uint64_t produced = z.total_out;
  inflateEnd(&z);
  if (rc != Z_STREAM_END || produced != r.size) {
    return absl::InvalidArgumentError(absl::StrCat("zip: record ", r.name, " does not inflate to its declared size"));
  }
  if (!crc_ok(out)) return absl::InvalidArgumentError(absl::StrCat("zip: record ", r.name, " fails its CRC"));
  return out;
}

absl::Status CheckCodeDepth(const std::string& code, const std::string& name, int max_depth) {
  int depth = 0;
  for (char c : code) {
    if (c == '(' || c == '[' || c == '{') {
      if (++depth > max_depth) {
        return absl::InvalidArgumentError(
            absl::StrCat("code record ", name, " nests brackets more than ", max_depth, " deep"));
      }
    } else if ((c == ')' || c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return absl::OkStatus();
}

}  // namespace

struct TorchZip::Impl {
  std::string path;
  std::ifstream in;
  uint64_t size = 0;
  std::string folder;
  std::unordered_map<std::string, ZipRecord> records;  // by name inside the folder
};

absl::StatusOr<TorchZip> TorchZip::Open(const std::string& path, const ArchiveLimits& limits) {
  auto impl = std::make_shared<Impl>();
  impl->path = path;
  impl->in.open(path, std::ios::binary | std::ios::ate);
  std::ifstream& in = impl->in;
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read '", path, "'"));
  const auto size = static_cast<uint64_t>(in.tellg());
  impl->size = size;
  const auto refuse = [&](const absl::Status& s) {
    return absl::InvalidArgumentError(absl::StrCat("'", path, "' refused before loading: ", s.message()));
  };
  auto records = Directory(in, size, limits);
  if (!records.ok()) return refuse(records.status());
  // What LibTorch's reader checks in its constructor is checked here first:
  // when its constructor throws, the zip state it allocated is never freed
  // (found by fuzzing: every such file leaked ~600 bytes).
  if (records->empty()) return refuse(absl::InvalidArgumentError("the archive holds no records"));
  const size_t slash = (*records)[0].name.find('/');
  if (slash == std::string::npos) {
    return refuse(absl::InvalidArgumentError(absl::StrCat("record '", (*records)[0].name,
                                                          "' is not in a folder (torch archives keep all under one)")));
  }
  const std::string folder = (*records)[0].name.substr(0, slash + 1);
  const ZipRecord* version = nullptr;
  for (const std::string& name : {folder + ".data/version", folder + "version"}) {
    for (const ZipRecord& r : *records) {
      if (version == nullptr && r.name == name) version = &r;
    }
  }
  if (version == nullptr) return refuse(absl::InvalidArgumentError("no version record"));
  if (version->size > 64) return refuse(absl::InvalidArgumentError("the version record is not a number"));
  auto version_text = RecordBytes(in, size, *version);
  if (!version_text.ok()) return refuse(version_text.status());
  const std::string v(absl::StripAsciiWhitespace(*version_text));
  const bool digits = !v.empty() && v.size() <= 9 && v.find_first_not_of("0123456789") == std::string::npos;
  const uint64_t number = digits ? std::stoull(v) : 0;
  if (!digits || number < caffe2::serialize::kMinSupportedFileFormatVersion ||
      number > caffe2::serialize::kMaxSupportedFileFormatVersion) {
    return refuse(absl::InvalidArgumentError(absl::StrCat(
        "archive format version '", absl::CHexEscape(v.substr(0, 16)), "' is not one this LibTorch reads (",
        caffe2::serialize::kMinSupportedFileFormatVersion, "..", caffe2::serialize::kMaxSupportedFileFormatVersion,
        ")")));
  }
  for (const ZipRecord& r : *records) {
    const bool pickle = absl::EndsWith(r.name, ".pkl");
    const bool code = absl::StrContains(r.name, "/code/") && absl::EndsWith(r.name, ".py");
    const int64_t limit = pickle || code ? limits.max_pickle_bytes : limits.max_record_bytes;
    if (r.size > static_cast<uint64_t>(limit)) {
      return refuse(absl::InvalidArgumentError(
          absl::StrCat("record ", r.name, " holds ", r.size, " bytes, more than the limit of ", limit)));
    }
    if (r.method != 0 && r.method != 8) {
      return refuse(absl::InvalidArgumentError(absl::StrCat("record ", r.name, " uses zip method ", r.method)));
    }
    // Encrypted (bits 0 and 6) or patch data (bit 5): no torch archive has
    // them, and LibTorch's reader fails on them (in its constructor, leaking).
    if ((r.flags & 0x61) != 0) {
      return refuse(absl::InvalidArgumentError(
          absl::StrCat("record ", r.name, " is encrypted or patch data (zip flags ", r.flags, ")")));
    }
    if (!pickle && !code) continue;
    auto bytes = RecordBytes(in, size, r);
    if (!bytes.ok()) return refuse(bytes.status());
    const absl::Status checked = pickle ? CheckPickle(*bytes, limits.max_pickle_depth)
                                        : CheckCodeDepth(*bytes, r.name, limits.max_code_depth);
    if (!checked.ok()) return refuse(absl::InvalidArgumentError(absl::StrCat(r.name, ": ", checked.message())));
  }
  impl->folder = folder;
  for (ZipRecord& r : *records) {
    if (absl::StartsWith(r.name, folder)) impl->records.emplace(r.name.substr(folder.size()), std::move(r));
  }
  TorchZip zip;
  zip.impl_ = std::move(impl);
  return zip;
}

bool TorchZip::Has(const std::string& name) const { return impl_->records.count(name) > 0; }

absl::StatusOr<std::string> TorchZip::Read(const std::string& name) const {
  const auto it = impl_->records.find(name);
  if (it == impl_->records.end()) {
    return absl::NotFoundError(absl::StrCat("record '", impl_->folder, name, "' is missing from '", impl_->path, "'"));
  }
  auto bytes = RecordBytes(impl_->in, impl_->size, it->second);
  if (!bytes.ok()) return absl::InvalidArgumentError(absl::StrCat("'", impl_->path, "': ", bytes.status().message()));
  return bytes;
}

absl::Status CheckTorchArchive(const std::string& path, const ArchiveLimits& limits) {
  return TorchZip::Open(path, limits).status();
}

}  // namespace graft::core
