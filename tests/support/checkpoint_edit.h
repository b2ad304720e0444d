// Test support for checkpoints of the learner (LibTorch archives): a copy with one tensor
// changed, to make a checkpoint nothing in the product would write. Header-only, as only the
// LibTorch-linked tests include it.
#pragma once

#include <torch/serialize.h>

#include <functional>
#include <string>

namespace gsau::testing {

// Writes to `out_path` the archive at `in_path` with the tensor `key` replaced by
// edit(a copy of it). False when the archive has no `key` (out_path then holds an unchanged copy).
inline bool EditCheckpointTensor(const std::string& in_path, const std::string& out_path, const std::string& key,
                                 const std::function<torch::Tensor(torch::Tensor)>& edit) {
  torch::NoGradGuard no_grad;
  torch::serialize::InputArchive in;
  in.load_from(in_path);
  torch::serialize::OutputArchive out;
  bool found = false;
  for (const auto& k : in.keys()) {
    torch::Tensor t;
    in.read(k, t);
    if (k == key) {
      t = edit(t.detach().clone());
      found = true;
    }
    out.write(k, t);
  }
  out.save_to(out_path);
  return found;
}

}  // namespace gsau::testing
