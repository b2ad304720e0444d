// The LightGCN propagation: a symmetric normalised user-item adjacency in CSR form and a fast,
// differentiable sparse x dense product.
//
// Node layout: rows [0, num_users) are users (row 0 = padding user), rows
// [num_users, num_users + num_items) are items (row num_users = padding item). Embeddings are
// row-major [nodes, d] float32. Padding rows have no edges, so their propagated rows are zero.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "gsau/learner/dataset.h"

namespace gsau::learner {

struct CsrMatrix {
  torch::Tensor row_ptr;  // [rows + 1] int64
  torch::Tensor col;      // [nnz] int64
  torch::Tensor val;      // [nnz] float32
  int64_t rows = 0;

  CsrMatrix To(const torch::Device& device) const;
  // The same matrix as a dense [rows, rows] tensor (tests).
  torch::Tensor ToDense() const;
};

// L = D^-1/2 A D^-1/2 over users + items, A(u, i) = A(i, u) = 1 for each distinct training pair
// (repeats count once), D = row sums of A + 1e-7 (as the reference). Built on the CPU.
CsrMatrix BuildNormalizedAdjacency(int64_t num_users, int64_t num_items,
                                   const std::vector<GraphPair>& pairs);

// y = L x, differentiable in x. REQUIRES: L symmetric (the backward multiplies by L, not L^T);
// x is [L.rows, d] float32 on L's device. CPU: a row-parallel CSR kernel; CUDA: embedding_bag.
torch::Tensor SymmetricSpmm(const CsrMatrix& l, const torch::Tensor& x);

// LightGCN: mean of x, Lx, ..., L^layers x.
torch::Tensor LightGcnPropagate(const CsrMatrix& l, const torch::Tensor& x, int64_t layers);

}  // namespace gsau::learner
