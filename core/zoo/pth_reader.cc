// Reads torchvision .pth files: the zip container torch.save writes
// (<archive>/data.pkl plus one record per storage under <archive>/data/), and
// the subset of the pickle protocol (0-5) a state dict uses: an OrderedDict
// (with a _metadata attribute) of tensors rebuilt by
// torch._utils._rebuild_tensor_v2 from persistent storage ids.
// LibTorch 1.13's torch::pickle_load cannot rebuild that OrderedDict.


#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <variant>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"
#include "core/zoo/archive_check.h"
#include "core/util/torch_status.h"
#include "core/zoo/state_dict.h"

namespace graft::core {
namespace {

struct PyValue;
using PyRef = std::shared_ptr<PyValue>;

struct PyNone {};
struct PyMark {};
struct PyGlobal {
  std::string module, name;
  std::string Qualified() const { return module + "." + name; }
};
struct PyTuple {
  std::vector<PyRef> items;
};
struct PyList {
  std::vector<PyRef> items;
};
struct PyDict {
  std::vector<std::pair<PyRef, PyRef>> items;
};
// A storage reference (persistent id) resolved to a flat typed tensor.
struct PyStorage {
  torch::Tensor data;
};

struct PyValue {
  std::variant<PyNone, PyMark, bool, int64_t, double, std::string, PyGlobal, PyTuple, PyList,
               PyDict, PyStorage, torch::Tensor>
      v;
};

template <typename T>
PyRef Make(T value) {
  auto r = std::make_shared<PyValue>();
  r->v = std::move(value);
  return r;
}

absl::StatusOr<torch::ScalarType> StorageDtype(const std::string& name) {
  static const std::map<std::string, torch::ScalarType> kTypes = {
      {"FloatStorage", torch::kFloat32},  {"DoubleStorage", torch::kFloat64},
      {"HalfStorage", torch::kFloat16},   {"BFloat16Storage", torch::kBFloat16},
      {"LongStorage", torch::kInt64},     {"IntStorage", torch::kInt32},
      {"ShortStorage", torch::kInt16},    {"CharStorage", torch::kInt8},
      {"ByteStorage", torch::kUInt8},     {"BoolStorage", torch::kBool},
  };
  const auto it = kTypes.find(name);
  if (it == kTypes.end()) return absl::InvalidArgumentError(absl::StrCat("unsupported storage type torch.", name));
  return it->second;
}

class Unpickler {
 public:
  Unpickler(const std::string& data, const TorchZip& zip)
      : data_(data), zip_(zip) {}

  absl::StatusOr<PyRef> Run() {
    while (true) {
      if (pos_ >= data_.size()) return Error("pickle ends without STOP");
      const uint8_t op = Byte();
      switch (op) {
        case 0x80: Byte(); break;                         // PROTO
        case 0x95: Skip(8); break;                        // FRAME
        case '.': return Pop();                           // STOP
        case '(': Push(Make(PyMark{})); break;            // MARK
        case 'N': Push(Make(PyNone{})); break;
        case 0x88: Push(Make(true)); break;               // NEWTRUE
        case 0x89: Push(Make(false)); break;              // NEWFALSE
        case 'K': Push(Make(static_cast<int64_t>(Byte()))); break;            // BININT1
        case 'M': Push(Make(static_cast<int64_t>(LittleEndian(2)))); break;   // BININT2
        case 'J': Push(Make(static_cast<int64_t>(static_cast<int32_t>(LittleEndian(4))))); break;
        case 0x8a: {                                                          // LONG1
          const size_t n = Byte();
          if (n > 8) return Error("integer wider than 64 bits");
          uint64_t u = LittleEndian(n);
          if (n > 0 && n < 8 && (u >> (8 * n - 1)) & 1) u |= ~uint64_t{0} << (8 * n);
          Push(Make(static_cast<int64_t>(u)));
          break;
        }
        case 'G': {                                                           // BINFLOAT
          uint64_t bits = 0;
          for (int i = 0; i < 8; ++i) bits = (bits << 8) | Byte();
          double d;
          std::memcpy(&d, &bits, 8);
          Push(Make(d));
          break;
        }
        case 'X': Push(Make(Bytes(LittleEndian(4)))); break;  // BINUNICODE
        case 0x8c: Push(Make(Bytes(Byte()))); break;          // SHORT_BINUNICODE
        case 'T': Push(Make(Bytes(LittleEndian(4)))); break;  // BINSTRING
        case 'U': Push(Make(Bytes(Byte()))); break;           // SHORT_BINSTRING
        case 'c': {                                           // GLOBAL
          std::string module = Line(), name = Line();
          Push(Make(PyGlobal{module, name}));
          break;
        }
        case 0x93: {                                          // STACK_GLOBAL
          ASSIGN_OR_RETURN(std::string name, PopString());
          ASSIGN_OR_RETURN(std::string module, PopString());
          Push(Make(PyGlobal{module, name}));
          break;
        }
        case ')': Push(Make(PyTuple{})); break;               // EMPTY_TUPLE
        case ']': Push(Make(PyList{})); break;                // EMPTY_LIST
        case '}': Push(Make(PyDict{})); break;                // EMPTY_DICT
        case 0x85: case 0x86: case 0x87: {                    // TUPLE1..3
          const size_t n = op - 0x84;
          if (stack_.size() < n) return Error("stack underflow");
          PyTuple t;
          t.items.assign(stack_.end() - n, stack_.end());
          stack_.resize(stack_.size() - n);
          Push(Make(std::move(t)));
          break;
        }
        case 't': {                                           // TUPLE
          ASSIGN_OR_RETURN(auto items, PopToMark());
          Push(Make(PyTuple{std::move(items)}));
          break;
        }
        case 'l': {                                           // LIST
          ASSIGN_OR_RETURN(auto items, PopToMark());
          Push(Make(PyList{std::move(items)}));
          break;
        }
        case 'a': case 'e': {                                 // APPEND, APPENDS
          std::vector<PyRef> items;
          if (op == 'a') {
            ASSIGN_OR_RETURN(PyRef item, Pop());
            items.push_back(item);
          } else {
            ASSIGN_OR_RETURN(items, PopToMark());
          }
          ASSIGN_OR_RETURN(PyRef target, Top());
          auto* list = std::get_if<PyList>(&target->v);
          if (list == nullptr) return Error("APPEND on a non-list");
          list->items.insert(list->items.end(), items.begin(), items.end());
          break;
        }
        case 's': case 'u': {                                 // SETITEM, SETITEMS
          std::vector<PyRef> kv;
          if (op == 's') {
            ASSIGN_OR_RETURN(PyRef value, Pop());
            ASSIGN_OR_RETURN(PyRef key, Pop());
            kv = {key, value};
          } else {
            ASSIGN_OR_RETURN(kv, PopToMark());
          }
          ASSIGN_OR_RETURN(PyRef target, Top());
          auto* dict = std::get_if<PyDict>(&target->v);
          if (dict == nullptr || kv.size() % 2 != 0) return Error("SETITEMS on a non-dict");
          for (size_t i = 0; i < kv.size(); i += 2) dict->items.emplace_back(kv[i], kv[i + 1]);
          break;
        }
        case 'q': Memo(Byte()); break;                        // BINPUT
        case 'r': Memo(LittleEndian(4)); break;               // LONG_BINPUT
        case 0x94: Memo(memo_.size()); break;                 // MEMOIZE
        case 'h': case 'j': {                                 // BINGET, LONG_BINGET
          const uint64_t key = op == 'h' ? Byte() : LittleEndian(4);
          const auto it = memo_.find(key);
          if (it == memo_.end()) return Error(absl::StrCat("memo key ", key, " missing"));
          Push(it->second);
          break;
        }
        case 'Q': {                                           // BINPERSID
          ASSIGN_OR_RETURN(PyRef pid, Pop());
          ASSIGN_OR_RETURN(PyRef storage, LoadStorage(*pid));
          Push(storage);
          break;
        }
        case 'R': case 0x81: {                                // REDUCE, NEWOBJ
          ASSIGN_OR_RETURN(PyRef args, Pop());
          ASSIGN_OR_RETURN(PyRef fn, Pop());
          ASSIGN_OR_RETURN(PyRef result, Reduce(*fn, *args));
          Push(result);
          break;
        }
        case 'b': {                                           // BUILD: object state (e.g. _metadata), ignored
          ASSIGN_OR_RETURN(PyRef state, Pop());
          (void)state;
          break;
        }
        default:
          return Error(absl::StrCat("unsupported pickle opcode 0x", absl::Hex(op)));
      }
      if (truncated_) return Error("pickle data is truncated");
    }
  }

 private:
  absl::Status Error(const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat("data.pkl at byte ", pos_, ": ", what));
  }
  uint8_t Byte() {
    if (pos_ >= data_.size()) {
      truncated_ = true;
      return 0;
    }
    return static_cast<uint8_t>(data_[pos_++]);
  }
  void Skip(size_t n) {
    if (pos_ + n > data_.size()) truncated_ = true;
    pos_ = std::min(pos_ + n, data_.size());
  }
  uint64_t LittleEndian(size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(Byte()) << (8 * i);
    return v;
  }
  std::string Bytes(size_t n) {
    if (pos_ + n > data_.size()) {
      truncated_ = true;
      n = data_.size() - pos_;
    }
    std::string s = data_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  std::string Line() {
    const size_t end = data_.find('\n', pos_);
    if (end == std::string::npos) {
      truncated_ = true;
      return "";
    }
    std::string s = data_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return s;
  }
  void Push(PyRef v) { stack_.push_back(std::move(v)); }
  void Memo(uint64_t key) {
    if (!stack_.empty()) memo_[key] = stack_.back();
  }
  absl::StatusOr<PyRef> Top() {
    if (stack_.empty()) return Error("stack underflow");
    return stack_.back();
  }
  absl::StatusOr<PyRef> Pop() {
    if (stack_.empty()) return Error("stack underflow");
    PyRef v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  absl::StatusOr<std::string> PopString() {
    ASSIGN_OR_RETURN(PyRef v, Pop());
    const auto* s = std::get_if<std::string>(&v->v);
    if (s == nullptr) return Error("expected a string");
    return *s;
  }
  absl::StatusOr<std::vector<PyRef>> PopToMark() {
    for (size_t i = stack_.size(); i-- > 0;) {
      if (std::holds_alternative<PyMark>(stack_[i]->v)) {
        std::vector<PyRef> items(stack_.begin() + i + 1, stack_.end());
        stack_.resize(i);
        return items;
      }
    }
    return Error("MARK missing");
  }

  // pid = ('storage', torch.<Type>Storage, key, location, numel)
  absl::StatusOr<PyRef> LoadStorage(const PyValue& pid) {
    const auto* t = std::get_if<PyTuple>(&pid.v);
    if (t == nullptr || t->items.size() < 5) return Error("persistent id is not a storage tuple");
    const auto* type = std::get_if<PyGlobal>(&t->items[1]->v);
    const auto* key = std::get_if<std::string>(&t->items[2]->v);
    if (type == nullptr || key == nullptr) return Error("malformed storage persistent id");
    const auto cached = storages_.find(*key);
    if (cached != storages_.end()) return cached->second;
    ASSIGN_OR_RETURN(const torch::ScalarType dtype, StorageDtype(type->name));
    const std::string record = "data/" + *key;
    if (!zip_.Has(record)) return Error(absl::StrCat("storage record '", record, "' missing from the archive"));
    ASSIGN_OR_RETURN(const std::string data, zip_.Read(record));
    const size_t bytes = data.size();
    const size_t element = c10::elementSize(dtype);
    if (bytes % element != 0) return Error(absl::StrCat("storage '", *key, "' size is not a multiple of its element"));
    torch::Tensor flat = torch::empty({static_cast<int64_t>(bytes / element)}, torch::TensorOptions().dtype(dtype));
    if (bytes > 0) std::memcpy(flat.data_ptr(), data.data(), bytes);
    PyRef storage = Make(PyStorage{flat});
    storages_[*key] = storage;
    return storage;
  }

  absl::StatusOr<std::vector<int64_t>> IntTuple(const PyValue& v) {
    const auto* t = std::get_if<PyTuple>(&v.v);
    if (t == nullptr) return Error("expected a tuple of ints");
    std::vector<int64_t> out;
    for (const auto& item : t->items) {
      const auto* i = std::get_if<int64_t>(&item->v);
      if (i == nullptr) return Error("expected a tuple of ints");
      out.push_back(*i);
    }
    return out;
  }

  absl::StatusOr<PyRef> Reduce(const PyValue& fn, const PyValue& args) {
    const auto* g = std::get_if<PyGlobal>(&fn.v);
    const auto* a = std::get_if<PyTuple>(&args.v);
    if (g == nullptr || a == nullptr) return Error("REDUCE on a non-global callable");
    const std::string name = g->Qualified();
    if (name == "collections.OrderedDict" || name == "builtins.dict") return Make(PyDict{});
    if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor") {
      if (a->items.size() < 4) return Error("_rebuild_tensor_v2 with too few arguments");
      const auto* storage = std::get_if<PyStorage>(&a->items[0]->v);
      const auto* offset = std::get_if<int64_t>(&a->items[1]->v);
      if (storage == nullptr || offset == nullptr) return Error("_rebuild_tensor_v2 arguments malformed");
      ASSIGN_OR_RETURN(const auto size, IntTuple(*a->items[2]));
      ASSIGN_OR_RETURN(const auto stride, IntTuple(*a->items[3]));
      int64_t extent = *offset + 1;
      for (size_t i = 0; i < size.size() && i < stride.size(); ++i) {
        if (size[i] == 0) extent = 0;
        if (extent > 0) extent += (size[i] - 1) * stride[i];
      }
      if (size.size() != stride.size() || extent > storage->data.numel() || *offset < 0) {
        return Error("tensor view exceeds its storage");
      }
      return Make(storage->data.as_strided(size, stride, *offset).clone());
    }
    if (name == "torch._utils._rebuild_parameter") {
      if (a->items.empty()) return Error("_rebuild_parameter without data");
      return a->items[0];
    }
    return Error(absl::StrCat("unsupported callable ", name, " (not a plain tensor state dict)"));
  }

  const std::string& data_;
  const TorchZip& zip_;
  size_t pos_ = 0;
  bool truncated_ = false;
  std::vector<PyRef> stack_;
  std::map<uint64_t, PyRef> memo_;
  std::map<std::string, PyRef> storages_;
};

absl::StatusOr<StateDict> ReadPthUnguarded(const std::string& path) {
  {
    std::ifstream probe(path, std::ios::binary);
    if (!probe) return absl::NotFoundError(absl::StrCat("cannot open '", path, "'"));
    char magic[2] = {0, 0};
    probe.read(magic, 2);
    if (magic[0] != 'P' || magic[1] != 'K') {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": not a zip archive; legacy torch.save files (before PyTorch 1.6) are not "
                "supported, re-save with torch.save(state_dict, path)"));
    }
  }
  // graft's own zip reading, checked as a whole first (CheckTorchArchive's
  // checks): limits, CRCs, one folder, a version LibTorch reads, every pickle.
  ASSIGN_OR_RETURN(const TorchZip zip, TorchZip::Open(path));
  if (!zip.Has("data.pkl")) return absl::InvalidArgumentError(absl::StrCat(path, ": no data.pkl in archive"));
  ASSIGN_OR_RETURN(const std::string pickle, zip.Read("data.pkl"));
  Unpickler unpickler(pickle, zip);
  auto root = unpickler.Run();
  if (!root.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", root.status().message()));
  const auto* dict = std::get_if<PyDict>(&(*root)->v);
  if (dict == nullptr) return absl::InvalidArgumentError(absl::StrCat(path, ": top-level object is not a state dict"));
  StateDict out;
  for (const auto& [k, v] : dict->items) {
    const auto* key = std::get_if<std::string>(&k->v);
    const auto* tensor = std::get_if<torch::Tensor>(&v->v);
    if (key == nullptr || tensor == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": state dict holds a non-tensor entry",
                                                     key ? " '" + *key + "'" : ""));
    }
    out.emplace_back(*key, *tensor);
  }
  return out;
}

}  // namespace

absl::StatusOr<StateDict> ReadPth(const std::string& path) {
  return GuardExceptions(absl::StatusCode::kInvalidArgument, path, [&]() { return ReadPthUnguarded(path); });
}

}  // namespace graft::core
