#pragma once
/// \file
/// \brief MultiHeadAttention: multi-head self-attention over sequences of columns, as PyTorch's
/// `nn.MultiheadAttention(d_model, heads, batch_first=True)` called with q = k = v = x.

#include "resblocks/core/cached_input.hpp"
#include "resblocks/core/gemm.hpp"
#include "resblocks/core/layer.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/parameter_visitors.hpp"
#include "resblocks/core/random.hpp"
#include "resblocks/core/shape_error.hpp"
#include "resblocks/core/threading.hpp"
#include "resblocks/core/types.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace resblocks {

/// \brief Masking of a MultiHeadAttention besides the key-padding mask.
struct AttentionOptions {
  bool causal = false;  ///< token t attends to tokens <= t only (PyTorch's is_causal / a -inf upper triangle)
  /// Dropout on the attention weights in training mode (torch's MultiheadAttention(dropout=p)): each
  /// weight is zeroed with probability p, the others scaled by 1/(1 − p), after the softmax.
  double dropout = 0.0;
};

/// \brief Multi-head self-attention `y = W_o concat_h(dropout(softmax(Q_h K_hᵀ/√d_h)) V_h) + b_o` with
/// `[Q; K; V] = W_in x + b_in`, as `torch.nn.MultiheadAttention(d, heads, dropout=p, bias=True,
/// batch_first=True)` used as `mha(x, x, x)`.
///
/// Dropout of the attention weights (options.dropout > 0) acts in training mode only (the default;
/// `set_training(false)` or `eval(net)` turns it off; infer never drops). Its mask is drawn from
/// default_generator() (or set_generator()'s) before the heads run, one draw per weight in the order
/// of the weights' buffer, so it does not depend on the thread count; backward uses the same mask.
///
/// Parameters (PyTorch's names and shapes): `in_proj_weight` 3d × d (rows q | k | v), `in_proj_bias`
/// 3d, `out_proj.weight` d × d, `out_proj.bias` d. Head h uses rows h·d_h … (h+1)·d_h − 1 of q, k, v.
///
/// Layout: rows = model dimension, one column per token; token t of sequence b is column t + L·b,
/// where the sequence length L is run-time state set with set_sequence_length() (the number of
/// sequences is columns / L). A key-padding mask (L × batch, true = padded key, ignored) and the
/// causal option restrict which keys a query sees. A query that sees no key at all (every key it
/// may attend to is padded) gets attention output 0, so y = out_proj.bias there, and passes no
/// gradient; PyTorch returns NaN for such a query.
///
/// One GEMM computes Q, K and V for all tokens; the (sequence, head) pairs then run spread over the
/// threads, single-threaded products inside, each keeping its L × L attention weights for backward
/// (a causal mask skips the masked upper triangle in blocks of 32 queries); one GEMM applies
/// out_proj, and backward mirrors it (the softmax backward per query column). Results do not depend
/// on the thread count, and infer() runs the very code of forward() on the workspace's buffers.
/// In a Residual, the skip rides in out_proj's GEMM (forward_add) and in the dL/dx GEMM (backward_add).
template <class S = float, int ModelDim = Dynamic>
class MultiHeadAttention : public detail::VisitsParameters<MultiHeadAttention<S, ModelDim>> {
  static constexpr int QkvRows = ModelDim == Dynamic ? Dynamic : 3 * ModelDim;

 public:
  using Scalar = S;
  static constexpr int InFeatures = ModelDim;
  static constexpr int OutFeatures = ModelDim;
  using Input = Batch<S, ModelDim>;
  using Output = Batch<S, ModelDim>;
  using InWeight = detail::ParamMatrix<S, QkvRows, ModelDim>;
  using InBias = detail::ParamVector<S, QkvRows>;
  using OutWeight = detail::ParamMatrix<S, ModelDim, ModelDim>;
  using OutBias = detail::ParamVector<S, ModelDim>;
  using Matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
  static constexpr std::string_view name = "MultiHeadAttention";

  /// \brief Inference buffers of one caller (forward uses a member one).
  struct Workspace {
    Batch<S, QkvRows> qkv;  ///< [Q; K; V] of every token
    Matrix p;               ///< per (sequence, head): L × L attention weights, column i = query i
    Matrix p_dropped;       ///< p ⊙ the dropout mask (training forwards that drop only)
    Output attn;            ///< the heads' outputs, concatenated (out_proj's input)
    Output y;
  };

  /// \brief Static model dimension: `MultiHeadAttention<float, 256> mha(4);`.
  /// \param heads attention heads (ModelDim must be a multiple)
  /// \param options causal mask and attention dropout
  /// \throws std::invalid_argument on heads < 1 or not dividing ModelDim, or a dropout outside [0, 1]
  explicit MultiHeadAttention(Index heads, AttentionOptions options = {}) requires(ModelDim != Dynamic)
      : MultiHeadAttention(ModelDim, heads, options) {}

  /// \brief Run-time model dimension (must agree with a static one); `d_model` must be a multiple of `heads`.
  /// \param d_model model dimension d
  /// \param heads attention heads
  /// \param options causal mask and attention dropout
  /// \throws std::invalid_argument on a d_model that is negative or disagrees with ModelDim, heads < 1 or not
  ///   dividing d_model, or a dropout outside [0, 1]
  MultiHeadAttention(Index d_model, Index heads, AttentionOptions options = {}) : m_heads(heads), m_options(options) {
    detail::check_features(name, "d_model", ModelDim, d_model);
    if (heads < 1)
      throw std::invalid_argument(std::string(name) + ": heads must be >= 1, got " + std::to_string(heads));
    if (d_model % heads != 0)
      throw std::invalid_argument(std::string(name) + ": d_model " + std::to_string(d_model) +
                                  " is not divisible by heads " + std::to_string(heads));
    if (!(options.dropout >= 0.0 && options.dropout <= 1.0))
      throw std::invalid_argument(std::string(name) + ": the attention dropout must be in [0, 1], got " +
                                  std::to_string(options.dropout));
    m_in_weight.setZero(3 * d_model, d_model);
    m_in_bias.setZero(3 * d_model);
    m_out_weight.setZero(d_model, d_model);
    m_out_bias.setZero(d_model);
    m_dL_din_weight.setZero(3 * d_model, d_model);
    m_dL_din_bias.setZero(3 * d_model);
    m_dL_dout_weight.setZero(d_model, d_model);
    m_dL_dout_bias.setZero(d_model);
    reset_parameters(default_generator());
  }

  /// PyTorch's initialisation (MultiheadAttention._reset_parameters): xavier_uniform_ on
  /// in_proj_weight, U(±√(6/(d + 3d))); out_proj.weight as nn.Linear's kaiming_uniform_(a=√5),
  /// U(±1/√d); both biases 0.
  /// \param g generator both weights are drawn from
  void reset_parameters(Generator& g) {
    const auto d = static_cast<double>(model_dim());
    fill_uniform(m_in_weight, d > 0 ? std::sqrt(6.0 / (d + 3.0 * d)) : 0.0, g);
    fill_uniform(m_out_weight, d > 0 ? 1.0 / std::sqrt(d) : 0.0, g);
    m_in_bias.setZero();
    m_out_bias.setZero();
  }

  [[nodiscard]] Index model_dim() const noexcept { return m_out_weight.rows(); }
  [[nodiscard]] Index in_features() const noexcept { return model_dim(); }
  [[nodiscard]] Index out_features() const noexcept { return model_dim(); }
  [[nodiscard]] Index heads() const noexcept { return m_heads; }
  [[nodiscard]] Index head_dim() const noexcept { return model_dim() / m_heads; }
  [[nodiscard]] const AttentionOptions& options() const noexcept { return m_options; }

  /// \brief Training mode (the default) drops attention weights when options().dropout > 0; eval does not.
  /// \param training true for training mode, false for evaluation
  void set_training(bool training) noexcept { m_training = training; }
  [[nodiscard]] bool training() const noexcept { return m_training; }
  /// \brief Draws the dropout masks from `g` (which must outlive the layer's forwards) instead of
  /// default_generator().
  /// \param g the generator the masks are drawn from
  void set_generator(Generator& g) noexcept { m_generator = &g; }

  /// \brief Sets the sequence length L (>= 1): the input's columns are then columns / L sequences of L tokens.
  /// \param length tokens per sequence L
  /// \throws std::invalid_argument on length < 1
  void set_sequence_length(Index length) {
    if (length < 1)
      throw std::invalid_argument(std::string(name) + ": the sequence length must be >= 1, got " +
                                  std::to_string(length));
    m_length = length;
  }
  /// \brief The sequence length; 0 until set_sequence_length() is called.
  /// \returns L, or 0
  [[nodiscard]] Index sequence_length() const noexcept { return m_length; }

  /// Key-padding mask, `mask[t + L·b]` != 0: token t of sequence b is padding, no query attends to it
  /// (PyTorch's key_padding_mask[b, t] = True). Its size must be L × batch at forward/infer time.
  /// Applies to every later forward/infer until cleared (allocates here, not in the steps).
  /// \param mask L·batch flags, nonzero for a padded token
  void set_key_padding_mask(std::span<const unsigned char> mask) {
    m_keep.resize(static_cast<Index>(mask.size()));
    for (std::size_t i = 0; i < mask.size(); ++i) m_keep(static_cast<Index>(i)) = mask[i] ? S(0) : S(1);
    m_mask_rows = -1;
    m_has_mask = true;
  }
  /// \brief Key-padding mask as an L × batch bool matrix (true = padded key); its shape is checked at forward.
  /// \param mask L × batch, true for a padded key
  template <class Derived>
  void set_key_padding_mask(const Eigen::DenseBase<Derived>& mask) {
    static_assert(std::is_same_v<typename Derived::Scalar, bool>,
                  "MultiHeadAttention::set_key_padding_mask: the mask must have bool entries");
    m_keep.resize(mask.size());
    for (Index b = 0; b < mask.cols(); ++b)
      for (Index t = 0; t < mask.rows(); ++t) m_keep(t + mask.rows() * b) = mask(t, b) ? S(0) : S(1);
    m_mask_rows = mask.rows();
    m_has_mask = true;
  }
  void clear_key_padding_mask() noexcept { m_has_mask = false; }
  [[nodiscard]] bool has_key_padding_mask() const noexcept { return m_has_mask; }

  InWeight& in_proj_weight() noexcept { return m_in_weight; }
  const InWeight& in_proj_weight() const noexcept { return m_in_weight; }
  InBias& in_proj_bias() noexcept { return m_in_bias; }
  const InBias& in_proj_bias() const noexcept { return m_in_bias; }
  OutWeight& out_proj_weight() noexcept { return m_out_weight; }
  const OutWeight& out_proj_weight() const noexcept { return m_out_weight; }
  OutBias& out_proj_bias() noexcept { return m_out_bias; }
  const OutBias& out_proj_bias() const noexcept { return m_out_bias; }
  const InWeight& in_proj_weight_grad() const noexcept { return m_dL_din_weight; }
  const InBias& in_proj_bias_grad() const noexcept { return m_dL_din_bias; }
  const OutWeight& out_proj_weight_grad() const noexcept { return m_dL_dout_weight; }
  const OutBias& out_proj_bias_grad() const noexcept { return m_dL_dout_bias; }

  /// The attention weights of the last forward, sequence b, head h: an L × L matrix whose column i
  /// holds query i's weights over the keys (PyTorch's attn_output_weights[b, h] transposed), before
  /// dropout (attention_dropout_mask() holds the factors of a training forward that dropped).
  /// Throws std::out_of_range outside the last forward's sequences and heads.
  /// \param sequence the sequence b of the last forward's batch
  /// \param head the head h
  /// \returns a read-only L × L view into the layer's buffer
  /// \throws std::out_of_range outside the last forward's sequences and heads
  [[nodiscard]] auto attention_weights(Index sequence, Index head) const {
    const Index l = m_fwd_length, sequences = l > 0 ? m_fwd.p.cols() / (l * m_heads) : 0;
    if (sequence < 0 || sequence >= sequences || head < 0 || head >= m_heads)
      throw std::out_of_range(std::string(name) + ": attention_weights(" + std::to_string(sequence) + ", " +
                              std::to_string(head) + ") outside the last forward's " + std::to_string(sequences) +
                              " sequences and " + std::to_string(m_heads) + " heads");
    return m_fwd.p.middleCols((sequence * m_heads + head) * l, l);
  }
  /// The dropout factors of the last forward (0 or 1/(1 − p) per weight, laid out as the weights of
  /// every (sequence, head) side by side); empty when that forward did not drop.
  /// \returns the mask, L × (L·sequences·heads), or empty
  [[nodiscard]] const Matrix& attention_dropout_mask() const noexcept { return m_drop_mask; }

  const Output& forward(const Input& x) {
    forward_add(x, m_fwd.y, Output::Zero(model_dim(), x.cols()));
    return m_fwd.y;
  }
  const Output& forward(Input&&) = delete;  // forward keeps a reference to its input

  /// \brief y = skip + attention(x): the skip initialises out_proj's GEMM accumulator.
  /// \param x input batch, L·sequences columns, kept by reference until backward
  /// \param y output, resized by the call
  /// \param skip added to the result, of the output's shape
  /// \throws std::logic_error when the sequence length is not set
  /// \throws std::invalid_argument when x has the wrong feature count or is not a whole number of sequences, or
  ///   the key-padding mask does not match it
  template <class Skip>
  void forward_add(const Input& x, Output& y, const Skip& skip) {
    check_input(x);
    m_x = &x;
    m_fwd_length = m_length;
    m_dropping = m_training && m_options.dropout > 0.0;
    if (m_dropping) {
      // Drawn here, in buffer order, so the mask does not depend on which thread runs which head.
      const Index l = m_length;
      m_drop_mask.resize(l, l * parts(x.cols(), l));
      const double p = m_options.dropout;
      const S keep_scale = p < 1.0 ? S(1.0 / (1.0 - p)) : S(0);
      S* mask = m_drop_mask.data();
      for (Index i = 0, size = m_drop_mask.size(); i < size; ++i)
        mask[i] = m_generator->uniform01() >= p ? keep_scale : S(0);
      m_fwd.p_dropped.resize(l, l * parts(x.cols(), l));
    } else {
      m_drop_mask.resize(0, 0);
    }
    compute(x, y, skip, m_fwd, m_dropping ? &m_drop_mask : nullptr);
  }

  const Input& backward(const Output& dL_dy) {
    backward_into(dL_dy, m_dL_dx, NoSkip{});
    return m_dL_dx;
  }

  /// \brief dL_dx = skip_grad + dL/dx (skip_grad initialises the dL/dx GEMM's accumulator).
  /// \param dL_dy gradient of the loss with respect to the last forward's output
  /// \param dL_dx receives skip_grad + dL/dx, resized by the call
  /// \param skip_grad added to dL/dx, of the input's shape
  /// \throws std::logic_error before any forward
  /// \throws std::invalid_argument when dL_dy's shape is not the output's
  template <class SkipGrad>
  void backward_add(const Output& dL_dy, Input& dL_dx, const SkipGrad& skip_grad) {
    backward_into(dL_dy, dL_dx, skip_grad);
  }

  const Output& infer(const Input& x, Workspace& ws) const {
    infer_add(x, ws.y, Output::Zero(model_dim(), x.cols()), ws);
    return ws.y;
  }

  template <class Skip>
  void infer_add(const Input& x, Output& y, const Skip& skip, Workspace& ws) const {
    check_input(x);
    compute(x, y, skip, ws, nullptr);
  }

  void zero_grad() {
    detail::parallel_zero(m_dL_din_weight);
    m_dL_din_bias.setZero();
    detail::parallel_zero(m_dL_dout_weight);
    m_dL_dout_bias.setZero();
  }

 private:
  friend detail::VisitsParameters<MultiHeadAttention<S, ModelDim>>;
  template <class Self, class F>
  static void visit_parameters(Self& self, F& f, const ParameterName& prefix) {
    f(prefix.child("in_proj_weight").view(), self.m_in_weight, self.m_dL_din_weight);
    f(prefix.child("in_proj_bias").view(), self.m_in_bias, self.m_dL_din_bias);
    f(prefix.child("out_proj.weight").view(), self.m_out_weight, self.m_dL_dout_weight);
    f(prefix.child("out_proj.bias").view(), self.m_out_bias, self.m_dL_dout_bias);
  }

  struct NoSkip {};

  /// Checks the features, the sequence length and the mask against x (before any work).
  void check_input(const Input& x) const {
    detail::check_input_features(name, model_dim(), x);
    if (m_length < 1)
      throw std::logic_error(std::string(name) +
                             ": the sequence length is not set; call set_sequence_length(L) before forward/infer");
    if (x.cols() % m_length != 0)
      throw std::invalid_argument(std::string(name) + ": input is " + detail::shape_string(x.rows(), x.cols()) +
                                  " (features x columns), which is not a whole number of sequences of length " +
                                  std::to_string(m_length));
    if (!m_has_mask) return;
    const Index batch = x.cols() / m_length;
    const bool rows_ok = m_mask_rows < 0 || m_mask_rows == m_length;
    if (!rows_ok || m_keep.size() != x.cols()) {
      const std::string shape =
          m_mask_rows < 0 ? std::to_string(m_keep.size()) + " entries"
                          : detail::shape_string(m_mask_rows, m_keep.size() / std::max<Index>(1, m_mask_rows));
      throw std::invalid_argument(std::string(name) + ": the key padding mask is " + shape + ", expected " +
                                  detail::shape_string(m_length, batch) + " (sequence length x batch) for input " +
                                  detail::shape_string(x.rows(), x.cols()));
    }
  }

  /// dst = op(a)·op(b) for the per-(sequence, head) products: always on the packed kernels, which
  /// beat Eigen's coefficient-based product (gemm's choice for small sizes) on these shapes.
  template <bool TransA, bool TransB, class Dst, class A, class B>
  static void product(Dst& dst, const A& a, const B& b) {
    detail::gemm_accumulate<TransA, TransB, S>(dst.rows(), dst.cols(), TransA ? a.rows() : a.cols(),
                                               {a.data(), a.outerStride()}, {b.data(), b.outerStride()}, dst.data(),
                                               dst.outerStride(), detail::zero_block(dst));
  }

  [[nodiscard]] Index parts(Index cols, Index length) const noexcept { return cols / length * m_heads; }
  [[nodiscard]] S scale() const { return S(1) / std::sqrt(static_cast<S>(head_dim())); }

  /// [Q; K; V] = W_in x + b_in; per (sequence, head) P = softmax(K_hᵀ Q_h / √d_h) (column-wise),
  /// O_h = V_h (P ⊙ M) with M the dropout mask (when given); y = skip + W_o O + b_o.
  template <class Skip>
  void compute(const Input& x, Output& y, const Skip& skip, Workspace& w, const Matrix* drop) const {
    const Index d = model_dim(), n = x.cols(), l = m_length;
    w.qkv.resize(3 * d, n);
    detail::gemm<false, false>(w.qkv, m_in_weight, x, [&](Index r0, Index rows, Index c0, Index cols) {
      w.qkv.block(r0, c0, rows, cols).colwise() = m_in_bias.segment(r0, rows);
    });
    w.p.resize(l, l * parts(n, l));
    w.attn.resize(d, n);
    detail::parallel_parts(parts(n, l), [&](Index part) { attend(w, part, drop); });
    y.resize(d, n);
    detail::gemm<false, false>(y, m_out_weight, w.attn, [&](Index r0, Index rows, Index c0, Index cols) {
      y.block(r0, c0, rows, cols) = skip.block(r0, c0, rows, cols).colwise() + m_out_bias.segment(r0, rows);
    });
  }

  /// Queries per block: a causal query block [i0, i1) needs keys 0 … i1-1 only, so the products skip
  /// the masked upper triangle block by block; without the causal mask the whole sequence is one block.
  [[nodiscard]] Index query_block(Index length) const noexcept { return m_options.causal ? k_causal_block : length; }

  /// Forward of one (sequence, head) pair; touches only its own blocks of w.p (w.p_dropped) and w.attn.
  void attend(Workspace& w, Index part, const Matrix* drop) const {
    const Index l = m_length, dh = head_dim(), d = model_dim();
    const Index b = part / m_heads, h = part % m_heads, c0 = b * l;
    const auto& qkv = w.qkv;
    const auto q = qkv.block(h * dh, c0, dh, l);
    const auto k = qkv.block(d + h * dh, c0, dh, l);
    const auto v = qkv.block(2 * d + h * dh, c0, dh, l);
    auto p = w.p.middleCols(part * l, l);
    auto o = w.attn.block(h * dh, c0, dh, l);
    const S s = scale();
    constexpr S minus_inf = -std::numeric_limits<S>::infinity();
    for (Index i0 = 0; i0 < l; i0 += query_block(l)) {
      const Index nb = std::min(query_block(l), l - i0), i1 = i0 + nb;
      auto pb = p.block(0, i0, i1, nb);
      product<true, false>(pb, k.leftCols(i1), q.middleCols(i0, nb));  // p(j, i) = k_j · q_i, column i = query i
      for (Index i = i0; i < i1; ++i) {
        const Index seen = m_options.causal ? i + 1 : l;  // keys 0 … seen-1 may be attended to
        auto col = p.col(i).head(seen).array();
        S max = minus_inf;
        if (m_has_mask)
          max = (m_keep.segment(c0, seen).array() > S(0)).select(col, minus_inf).maxCoeff();
        else
          max = col.maxCoeff();
        if (!(max > minus_inf)) {  // every key masked: weights 0 (PyTorch: NaN)
          p.col(i).setZero();
          continue;
        }
        col = ((col - max) * s).exp();                            // softmax of s·scores: exp(s·(score - max)) ≤ 1
        if (m_has_mask) col *= m_keep.segment(c0, seen).array();  // masked keys: exactly 0
        col *= S(1) / col.sum();
        p.col(i).tail(l - seen).setZero();
      }
      auto ob = o.middleCols(i0, nb);
      if (drop) {
        auto pdb = w.p_dropped.middleCols(part * l, l).block(0, i0, i1, nb);
        pdb = pb.cwiseProduct(drop->middleCols(part * l, l).block(0, i0, i1, nb));
        product<false, false>(ob, v.leftCols(i1), pdb);  // o_i = Σ_j p(j, i) m(j, i) v_j
      } else {
        product<false, false>(ob, v.leftCols(i1), pb);  // o_i = Σ_j p(j, i) v_j
      }
    }
  }

  template <class SkipGrad>
  void backward_into(const Output& dL_dy, Input& dL_dx, const SkipGrad& skip_grad) {
    const Input& x = m_x.get(name);
    const Index d = model_dim(), n = x.cols();
    detail::check_output_gradient(name, d, n, dL_dy);
    // out_proj: dW_o += dL_dy Oᵀ (the thread owning column 0 of a row block adds its bias gradient),
    // dO = W_oᵀ dL_dy.
    detail::gemm<false, true>(m_dL_dout_weight, dL_dy, m_fwd.attn, [&](Index r0, Index rows, Index c0, Index) {
      // (An empty batch adds nothing, and its empty block would offset a null pointer.)
      if (c0 == 0 && n > 0) m_dL_dout_bias.segment(r0, rows) += dL_dy.middleRows(r0, rows).rowwise().sum();
    });
    m_dL_dattn.resize(d, n);
    detail::gemm<true, false>(m_dL_dattn, m_out_weight, dL_dy, false);
    m_dL_dqkv.resize(3 * d, n);
    const Index l = m_fwd_length;  // the forward's, should the length have been changed since
    m_dL_dp.resize(l, l * parts(n, l));
    detail::parallel_parts(parts(n, l), [&](Index part) { attend_backward(part); });
    // in_proj: dW_in += dQKV xᵀ, db_in += Σ_columns dQKV, dL_dx = (skip_grad +) W_inᵀ dQKV.
    detail::gemm<false, true>(m_dL_din_weight, m_dL_dqkv, x, [&](Index r0, Index rows, Index c0, Index) {
      if (c0 == 0 && n > 0) m_dL_din_bias.segment(r0, rows) += m_dL_dqkv.middleRows(r0, rows).rowwise().sum();
    });
    dL_dx.resize(d, n);
    if constexpr (std::is_same_v<SkipGrad, NoSkip>)
      detail::gemm<true, false>(dL_dx, m_in_weight, m_dL_dqkv, detail::zero_block(dL_dx));
    else
      detail::gemm<true, false>(dL_dx, m_in_weight, m_dL_dqkv, detail::assign_block(dL_dx, skip_grad));
  }

  /// Backward of one (sequence, head) pair: dV_h = dO_h (P ⊙ M)ᵀ, dP = (V_hᵀ dO_h) ⊙ M (M: the dropout
  /// mask, or 1), dS = s·P ⊙ (dP − Σ_keys P ⊙ dP) (softmax backward per query column), dQ_h = K_h dS,
  /// dK_h = Q_h dSᵀ.
  /// Query blocks run last to first: key block [j0, j1) of dK and dV needs the query columns >= j0.
  void attend_backward(Index part) {
    const Index l = m_fwd_length, dh = head_dim(), d = model_dim();
    const Index b = part / m_heads, h = part % m_heads, c0 = b * l;
    const auto& qkv = m_fwd.qkv;
    const auto q = qkv.block(h * dh, c0, dh, l);
    const auto k = qkv.block(d + h * dh, c0, dh, l);
    const auto v = qkv.block(2 * d + h * dh, c0, dh, l);
    const auto p = m_fwd.p.middleCols(part * l, l);
    const auto pd = m_dropping ? m_fwd.p_dropped.middleCols(part * l, l) : p;  // the weights V was mixed with
    const auto d_o = m_dL_dattn.block(h * dh, c0, dh, l);
    auto dq = m_dL_dqkv.block(h * dh, c0, dh, l);
    auto dk = m_dL_dqkv.block(d + h * dh, c0, dh, l);
    auto dv = m_dL_dqkv.block(2 * d + h * dh, c0, dh, l);
    auto ds = m_dL_dp.middleCols(part * l, l);
    const S s = scale();
    const Index blocks = (l + query_block(l) - 1) / query_block(l);
    for (Index block = blocks - 1; block >= 0; --block) {
      const Index i0 = block * query_block(l), nb = std::min(query_block(l), l - i0), i1 = i0 + nb;
      auto dsb = ds.block(0, i0, i1, nb);
      product<true, false>(dsb, v.leftCols(i1), d_o.middleCols(i0, nb));  // ds(j, i) = v_j · dO_i = dL/dp(j, i)
      for (Index i = i0; i < i1; ++i) {
        const Index seen = m_options.causal ? i + 1 : l;
        const auto pc = p.col(i).head(seen).array();
        auto g = ds.col(i).head(seen).array();
        if (m_dropping) g *= m_drop_mask.col(part * l + i).head(seen).array();
        const S dot = (pc * g).sum();
        g = s * pc * (g - dot);
        ds.col(i).tail(l - seen).setZero();
      }
      auto dqb = dq.middleCols(i0, nb);
      product<false, false>(dqb, k.leftCols(i1), dsb);
      // Keys i0 … i1-1 are seen by queries i0 … l-1 only.
      auto dkb = dk.middleCols(i0, nb);
      product<false, true>(dkb, q.rightCols(l - i0), ds.block(i0, i0, nb, l - i0));
      auto dvb = dv.middleCols(i0, nb);
      product<false, true>(dvb, d_o.rightCols(l - i0), pd.block(i0, i0, nb, l - i0));
    }
  }

  static constexpr Index k_causal_block = 32;

  Index m_heads;
  AttentionOptions m_options;
  Index m_length = 0;
  Index m_fwd_length = 0;  ///< the sequence length of the last forward (backward and attention_weights use it)
  InWeight m_in_weight;
  InBias m_in_bias;
  OutWeight m_out_weight;
  OutBias m_out_bias;
  InWeight m_dL_din_weight;
  InBias m_dL_din_bias;
  OutWeight m_dL_dout_weight;
  OutBias m_dL_dout_bias;
  Eigen::Matrix<S, Eigen::Dynamic, 1> m_keep;  ///< 1 for a key that may be attended to, 0 for padding
  Index m_mask_rows = -1;                      ///< the mask's rows when given as a matrix, else -1
  bool m_has_mask = false;
  bool m_training = true;
  bool m_dropping = false;  ///< the last forward dropped attention weights
  Generator* m_generator = &default_generator();
  Matrix m_drop_mask;  ///< that forward's dropout factors, laid out as m_fwd.p
  CachedInput<Input> m_x;
  Workspace m_fwd;  ///< forward's buffers: Q, K, V, P and O stay for backward
  Output m_dL_dattn;
  Batch<S, QkvRows> m_dL_dqkv;
  Matrix m_dL_dp;
  Input m_dL_dx;
};

}  // namespace resblocks
