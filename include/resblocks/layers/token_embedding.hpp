#pragma once
/// \file
/// \brief TokenEmbedding: integer token ids to d-dimensional columns, as torch.nn.Embedding.

#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/parameter_visitors.hpp"
#include "resblocks/core/random.hpp"
#include "resblocks/core/shape_error.hpp"
#include "resblocks/core/threading.hpp"
#include "resblocks/core/types.hpp"

#include <Eigen/Core>

#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace resblocks {

/// \brief A lookup table of `vocab` vectors of `d_model` features, as `torch.nn.Embedding(vocab, d)`:
/// parameter `weight`, vocab × d (torch's shape, stored row-major so that a token's vector is
/// contiguous), initialised N(0, 1).
///
/// The front end of a network, not a Layer: its input is token ids (`std::span<const int>`, one per
/// column), not a batch of scalars, and it has no dL/dx. So forward(ids) gives the d × n batch
/// (column j = weight row ids[j]) and backward(dL_dy) only accumulates the weight gradient
/// (row ids[j] += column j of dL/dy, a scatter-add in column order, deterministic). Ids as
/// integers keep the types honest: a float id would be silently truncated, and a Layer's dL/dx
/// for ids would be a meaningless zero matrix. The loss at the other end (CrossEntropyLoss) takes
/// its labels the same way. It offers for_each_parameter/zero_grad, so optimizers take it as a part
/// of a model.
template <class S = float, int D = Dynamic>
class TokenEmbedding : public detail::VisitsParameters<TokenEmbedding<S, D>> {
 public:
  using Scalar = S;
  static constexpr int OutFeatures = D;
  using Output = Batch<S, D>;
  /// vocab × d, row-major (Eigen forbids a row-major single column, hence the D == 1 case).
  using Weight = Eigen::Matrix<S, Eigen::Dynamic, D, D == 1 ? Eigen::ColMajor : Eigen::RowMajor>;
  static constexpr std::string_view name = "TokenEmbedding";

  /// \brief Inference buffers of one caller.
  struct Workspace {
    Output y;
  };

  /// \brief Static model dimension: `TokenEmbedding<float, 64> emb(vocab);`.
  /// \param vocab number of token ids
  /// \throws std::invalid_argument on vocab < 1
  explicit TokenEmbedding(Index vocab) requires(D != Dynamic) : TokenEmbedding(vocab, D) {}

  /// \brief `vocab` >= 1 tokens of `d_model` features (must agree with a static D).
  /// \param vocab number of token ids
  /// \param d_model features per token
  /// \throws std::invalid_argument on vocab or d_model < 1, or a d_model disagreeing with D
  TokenEmbedding(Index vocab, Index d_model) {
    detail::check_features(name, "d_model", D, d_model);
    if (vocab < 1 || d_model < 1)
      throw std::invalid_argument(std::string(name) + ": vocab and d_model must be >= 1, got " + std::to_string(vocab) +
                                  " and " + std::to_string(d_model));
    m_weight.setZero(vocab, d_model);
    m_dL_dweight.setZero(vocab, d_model);
    reset_parameters(default_generator());
  }

  /// \brief torch's initialisation: every entry N(0, 1).
  /// \param g generator the table is drawn from
  void reset_parameters(Generator& g) {
    for (Index i = 0; i < m_weight.rows(); ++i)
      for (Index j = 0; j < m_weight.cols(); ++j) m_weight(i, j) = static_cast<S>(g.normal());
  }

  [[nodiscard]] Index vocab_size() const noexcept { return m_weight.rows(); }
  [[nodiscard]] Index model_dim() const noexcept { return m_weight.cols(); }
  [[nodiscard]] Index out_features() const noexcept { return m_weight.cols(); }

  Weight& weight() noexcept { return m_weight; }
  const Weight& weight() const noexcept { return m_weight; }
  const Weight& weight_grad() const noexcept { return m_dL_dweight; }

  /// The d × ids.size() batch of the ids' vectors; keeps a copy of the ids for backward. Throws
  /// std::invalid_argument, before any work, on an id outside [0, vocab).
  /// \param ids token ids, one per column of the result
  /// \returns the d × ids.size() batch, in a buffer the layer owns
  /// \throws std::invalid_argument on an id outside [0, vocab)
  const Output& forward(std::span<const int> ids) {
    check(ids);
    m_ids.assign(ids.begin(), ids.end());
    lookup(ids, m_y);
    m_forward_done = true;
    return m_y;
  }

  /// \brief Adds dL/dy's columns into the rows of the last forward's ids (nothing to return: ids have no
  /// gradient).
  /// \param dL_dy gradient of the loss with respect to the last forward's output
  /// \throws std::logic_error before any forward
  /// \throws std::invalid_argument when dL_dy's shape is not the output's
  void backward(const Output& dL_dy) {
    detail::check_forward_done(name, m_forward_done);
    detail::check_output_gradient(name, model_dim(), static_cast<Index>(m_ids.size()), dL_dy);
    for (std::size_t j = 0; j < m_ids.size(); ++j)
      m_dL_dweight.row(m_ids[j]) += dL_dy.col(static_cast<Index>(j)).transpose();
  }

  /// \brief forward() without touching the layer: the result lives in `ws`.
  /// \param ids token ids, one per column of the result
  /// \param ws the caller's buffers
  /// \returns the d × ids.size() batch, in `ws.y`
  /// \throws std::invalid_argument on an id outside [0, vocab)
  const Output& infer(std::span<const int> ids, Workspace& ws) const {
    check(ids);
    lookup(ids, ws.y);
    return ws.y;
  }

  void zero_grad() { detail::parallel_zero(m_dL_dweight); }

 private:
  friend detail::VisitsParameters<TokenEmbedding<S, D>>;
  template <class Self, class F>
  static void visit_parameters(Self& self, F& f, const ParameterName& prefix) {
    f(prefix.child("weight").view(), self.m_weight, self.m_dL_dweight);
  }

  void check(std::span<const int> ids) const {
    for (std::size_t j = 0; j < ids.size(); ++j)
      if (ids[j] < 0 || ids[j] >= vocab_size())
        throw std::invalid_argument(std::string(name) + ": token id " + std::to_string(ids[j]) + " at index " +
                                    std::to_string(j) + " is outside [0, " + std::to_string(vocab_size()) +
                                    ") (vocab " + std::to_string(vocab_size()) + ")");
  }

  void lookup(std::span<const int> ids, Output& y) const {
    const Index n = static_cast<Index>(ids.size());
    y.resize(model_dim(), n);
    detail::parallel_for(n, double(model_dim()), [&](Index j0, Index j1) {
      for (Index j = j0; j < j1; ++j) y.col(j) = m_weight.row(ids[static_cast<std::size_t>(j)]).transpose();
    });
  }

  Weight m_weight;
  Weight m_dL_dweight;
  std::vector<int> m_ids;
  bool m_forward_done = false;
  Output m_y;
};

}  // namespace resblocks
