#pragma once
// The textbook multi-head attention, the reference of the attention and Transformer tests.
#include <resblocks/layers/multi_head_attention.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

namespace rbtest {

/// The textbook computation, query by query and key by key with std::exp (PyTorch's order: the
/// query scaled first, masked scores -inf); a query without keys gets 0, as MultiHeadAttention does.
/// With `drop`, weight (key j, query i) of (sequence b, head h) is multiplied by drop(j, (b·heads + h)·L + i).
inline Eigen::MatrixXd naive_attention(const resblocks::MultiHeadAttention<double>& mha, const Eigen::MatrixXd& x,
                                       resblocks::Index length, const std::vector<unsigned char>& padded,
                                       const Eigen::MatrixXd* drop = nullptr) {
  using resblocks::Index;
  const Index d = mha.model_dim(), heads = mha.heads(), dh = d / heads;
  const Eigen::MatrixXd qkv = (mha.in_proj_weight() * x).colwise() + mha.in_proj_bias();
  Eigen::MatrixXd o = Eigen::MatrixXd::Zero(d, x.cols());
  for (Index b = 0; b < x.cols() / length; ++b)
    for (Index h = 0; h < heads; ++h)
      for (Index i = 0; i < length; ++i) {
        const Eigen::VectorXd q = qkv.col(b * length + i).segment(h * dh, dh) / std::sqrt(double(dh));
        std::vector<double> score(static_cast<std::size_t>(length), -std::numeric_limits<double>::infinity());
        double max = -std::numeric_limits<double>::infinity();
        for (Index j = 0; j < length; ++j) {
          const bool masked = (mha.options().causal && j > i) ||
                              (!padded.empty() && padded[static_cast<std::size_t>(b * length + j)] != 0);
          if (masked) continue;
          score[static_cast<std::size_t>(j)] = q.dot(qkv.col(b * length + j).segment(d + h * dh, dh));
          max = std::max(max, score[static_cast<std::size_t>(j)]);
        }
        if (max == -std::numeric_limits<double>::infinity()) continue;
        double sum = 0;
        for (double& e : score) sum += (e = std::exp(e - max));
        for (Index j = 0; j < length; ++j)
          o.col(b * length + i).segment(h * dh, dh) += score[static_cast<std::size_t>(j)] / sum *
                                                       (drop ? (*drop)(j, (b * heads + h) * length + i) : 1.0) *
                                                       qkv.col(b * length + j).segment(2 * d + h * dh, dh);
      }
  return (mha.out_proj_weight() * o).colwise() + mha.out_proj_bias();
}

}  // namespace rbtest
