// Implementation of tests/torch_samples.h.
#include "torch_samples.h"

#include <limits>

#include "core/dtype.h"
#include "test_util.h"

namespace ckb::test {

std::string fixture_file(const std::string& dir) {
  return fixture(dir + (dir == "torch_with_extras" ? "/checkpoint.pt" : "/model.pt"));
}

static Tensor tensor_of(DType dt, Shape shape, unsigned seed) {
  TensorInfo info{dt, std::move(shape)};
  Bytes b(info.nbytes());
  for (std::size_t i = 0; i < b.size(); ++i) b.data()[i] = static_cast<std::byte>((i * 31 + seed * 17 + 7) & 0xff);
  if (dt == DType::BOOL)
    for (std::size_t i = 0; i < b.size(); ++i) b.data()[i] = static_cast<std::byte>(i % 3 == 0);
  return make_memory_tensor(info, std::move(b));
}

Checkpoint all_kinds_checkpoint() {
  Checkpoint ck;
  ck.root = Node::dict();
  unsigned seed = 0;
  for (DType dt : kAllDTypes) ck.root.add(std::string(dtype_name(dt)), Node::tensor(tensor_of(dt, {2, 3}, ++seed)));
  ck.root.add("scalar0d", Node::tensor(tensor_of(DType::F32, {}, 99)));
  ck.root.add("rank5", Node::tensor(tensor_of(DType::I16, {2, 1, 3, 1, 2}, 5)));
  ck.root.add("zero", Node::tensor(tensor_of(DType::F32, {3, 0}, 5)));
  Node p = Node::tensor(tensor_of(DType::BF16, {4}, 3));
  p.attrs["torch.parameter"] = "1";
  p.attrs["torch.requires_grad"] = "1";
  ck.root.add("param", std::move(p));
  Node g = Node::tensor(tensor_of(DType::F16, {2}, 4));
  g.attrs["torch.requires_grad"] = "1";
  ck.root.add("grad", std::move(g));
  Node& extra = ck.root.add("extra", Node::dict());
  extra.attrs["torch.type"] = "OrderedDict";
  extra.add("neg", Node(std::int64_t{-5}));
  extra.add("i16", Node(std::int64_t{40000}));
  extra.add("i32", Node(std::int64_t{-2000000000}));
  extra.add("big", Node(std::int64_t{1} << 40));
  extra.add("min", Node(std::numeric_limits<std::int64_t>::min()));
  extra.add("max", Node(std::numeric_limits<std::int64_t>::max()));
  extra.add("pi", Node(3.141592653589793));
  extra.add("nan", Node(std::numeric_limits<double>::quiet_NaN()));
  extra.add("yes", Node(true));
  extra.add("no", Node(false));
  extra.add("nothing", Node::none());
  extra.add("text", Node(std::string("héllo/ünïcode")));
  extra.add("raw", Node(RawBytes{std::string("\x00\x01\xff\x80z", 5)}));
  Node& tup = extra.add("tup", Node::tuple());
  for (int i = 0; i < 5; ++i) tup.append(Node(std::int64_t{i}));
  extra.add("pair", Node::tuple()).append(Node(std::string("a")));
  Node& lst = extra.add("lst", Node::list());
  lst.append(Node::tensor(tensor_of(DType::U8, {3}, 8)));
  lst.append(Node::dict());
  lst.append(Node::list());
  extra.add("empty_tuple", Node::tuple());
  Node& state = extra.add("state", Node::dict());  // optimizer-style int keys
  state.attrs["torch.keys"] = "int";
  state.add("0", Node::tensor(tensor_of(DType::F32, {2}, 11)));
  state.add("-7", Node(std::string("neg")));

  return ck;
}

}  // namespace ckb::test
