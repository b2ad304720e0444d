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

// LightGcnPropagate(l, x, layers).index_select(0, rows), computed over the nodes within
// `layers` hops of `rows` only (equal up to float rounding; differentiable in x, and x's
// gradient is the same). A training batch's loss reads ~1,000 rows: on Toys their 2-hop
// neighbourhood holds a third of the edges, so this is ~3x less work than the full product.
// REQUIRES: l on the CPU (the plan is built there); x [l.rows, d] float32 on any device;
// rows int64 in [0, l.rows), any device, repeats allowed. Result: [rows.numel(), d] on x's device.
torch::Tensor LightGcnPropagateRows(const CsrMatrix& l, const torch::Tensor& x, int64_t layers,
                                    const torch::Tensor& rows);

}  // namespace gsau::learner
