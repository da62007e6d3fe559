#pragma once
/// \file
/// \brief Highway<H>: y = T(x) ⊙ H(x) + (1 − T(x)) ⊙ x with a learned sigmoid gate T.

#include "resblocks/core/cached_input.hpp"
#include "resblocks/core/image_size.hpp"
#include "resblocks/core/initializers.hpp"
#include "resblocks/core/layer.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/parameter_visitors.hpp"
#include "resblocks/core/random.hpp"
#include "resblocks/core/shape_error.hpp"
#include "resblocks/core/threading.hpp"
#include "resblocks/core/types.hpp"
#include "resblocks/layers/linear.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace resblocks {

/// \brief Settings of Highway.
struct HighwayOptions {
  /// Initial value of every entry of the gate bias b_T. Negative values start the block close to
  /// the identity (T ≈ σ(−2) ≈ 0.12 carries mostly x), as Srivastava et al. recommend.
  double gate_bias = -2.0;
};

/// \brief Highway block (Srivastava et al., 2015): `y = T ⊙ H(x) + (1 − T) ⊙ x`, `T = σ(W_T x + b_T)`,
/// for any layer H that keeps the feature count (e.g. `Sequential<Linear, ReLU>`).
///
/// Parameters: H's under `h`, the gate's `t.weight` (W_T, initialised as PyTorch's nn.Linear) and
/// `t.bias` (b_T, the constant HighwayOptions::gate_bias) — the names of the PyTorch module with
/// attributes `h` and `t`. The sigmoid and the mixing run in the gate GEMM's epilogue, on each
/// thread's block while it is in cache; in backward, (1 − T) ⊙ dL/dy and H's dL/dx initialise the
/// accumulator of the gate's dL/dx GEMM, so the three terms of
/// dL/dx = H'(x)ᵀ(T ⊙ g) + (1 − T) ⊙ g + W_Tᵀ (g ⊙ (H(x) − x) ⊙ T ⊙ (1 − T)) (g = dL/dy) add up without
/// a pass of their own.
template <class H>
class Highway : public detail::VisitsParameters<Highway<H>>, public detail::VisitsBuffers<Highway<H>> {
  static_assert(Layer<H>, "resblocks::Highway: H must satisfy resblocks::Layer");
  static_assert(H::InFeatures == H::OutFeatures,
                "resblocks::Highway: H must give as many output features as it takes (H::InFeatures == "
                "H::OutFeatures, both static or both Dynamic): y = T(x)*H(x) + (1 - T(x))*x mixes H(x) with x");

 public:
  using Scalar = typename H::Scalar;
  static constexpr int InFeatures = H::InFeatures;
  static constexpr int OutFeatures = H::OutFeatures;
  using Input = typename H::Input;
  using Output = typename H::Output;
  using Gate = Linear<Scalar, InFeatures, OutFeatures>;  ///< W_T x + b_T
  static constexpr std::string_view name = "Highway";

  /// \brief Inference buffers of one caller.
  struct Workspace {
    typename H::Workspace h;
    typename Gate::Workspace t;  ///< the gate's pre-activation, overwritten by T
    Output y;
  };

  /// \brief Static sizes, H default-constructed: `Highway<Sequential<Linear<float, 64, 64>, ReLU<float, 64>>> hw;`.
  /// \param options the gate bias
  /// \throws std::invalid_argument on a non-finite gate bias
  explicit Highway(HighwayOptions options = {}) requires(InFeatures != Dynamic && std::is_default_constructible_v<H>)
      : Highway(H{}, options) {}

  /// The feature count is H's (static, or its in_features()); throws std::invalid_argument when H
  /// takes any size (give it with the constructor below) or maps d features to another count.
  /// \param h the transform H
  /// \param options the gate bias
  /// \throws std::invalid_argument when H takes any feature count or changes it, or on a non-finite gate bias
  explicit Highway(H h, HighwayOptions options = {}) : Highway(Init{}, std::move(h), 0, false, options) {}

  /// \brief Explicit feature count `features` (must agree with H's, where H fixes one).
  /// \param h the transform H
  /// \param features feature count d of x, H(x) and y
  /// \param options the gate bias
  /// \throws std::invalid_argument when `features` is negative or disagrees with H's or the static size, when H
  ///   changes the feature count, or on a non-finite gate bias
  Highway(H h, Index features, HighwayOptions options = {}) : Highway(Init{}, std::move(h), features, true, options) {}

  [[nodiscard]] Index in_features() const noexcept { return m_gate.in_features(); }
  [[nodiscard]] Index out_features() const noexcept { return m_gate.out_features(); }
  [[nodiscard]] const HighwayOptions& options() const noexcept { return m_opt; }

  H& h() noexcept { return m_h; }
  const H& h() const noexcept { return m_h; }
  /// \brief The gate's Linear: weight() is W_T, bias() is b_T.
  /// \returns the gate layer
  Gate& gate() noexcept { return m_gate; }
  const Gate& gate() const noexcept { return m_gate; }
  /// \brief T = σ(W_T x + b_T) of the last forward.
  /// \returns T, of the input's shape (empty before the first forward)
  const Output& gate_values() const noexcept { return m_t; }

  /// Names used for H's and the gate's parameters (default `h` and `t`; an empty name puts them
  /// directly under this block's prefix). Views must outlive the block (string literals do).
  /// \param h name of H's parameters and buffers
  /// \param t name of the gate's parameters
  /// \returns `*this`
  Highway& set_child_names(std::string_view h, std::string_view t) {
    m_h_name = h;
    m_t_name = t;
    return *this;
  }

  /// \brief Configures H for inputs of `size`; H must keep the image size.
  /// \param size the input's height and width
  /// \returns `size`
  /// \throws std::invalid_argument when H gives another image size (or H's own check fails)
  ImageSize set_image_size(ImageSize size) {
    const ImageSize out = detail::propagate_image_size(m_h, size);
    if (!(out == size))
      throw std::invalid_argument("Highway: for " + size.str() + " images H gives " + out.str() +
                                  " images; the highway mixes H(x) with x, so H must keep the image size");
    return size;
  }

  void set_training(bool training) { detail::propagate_training(m_h, training); }
  /// \brief Tokens per sequence for every attention layer inside H.
  /// \param length tokens per sequence L
  /// \throws std::invalid_argument when a layer inside rejects it (an attention layer: length < 1)
  void set_sequence_length(Index length) { detail::propagate_sequence_length(m_h, length); }

 private:
  friend detail::VisitsBuffers<Highway<H>>;
  template <class Self, class F>
  static void visit_buffers(Self& self, F& f, const ParameterName& prefix) {
    detail::visit_buffers(self.m_h, f, prefix.child(self.m_h_name));
  }

 public:
  /// \brief Calls `f(h)`, then `f(gate)`.
  /// \param f callable taking H& and then Gate&
  template <class F>
  void for_each_layer(F&& f) {
    f(m_h);
    f(m_gate);
  }

  const Output& forward(const Input& x) {
    train_forward(x, m_y, Zero{});
    return m_y;
  }
  const Output& forward(Input&&) = delete;  // forward keeps a reference to its input

  /// \brief y = skip + Highway(x), in the gate GEMM's epilogue.
  /// \param x input batch, kept by reference until backward
  /// \param y output, resized to x's shape
  /// \param skip added to the result, of x's shape (may be `y` itself)
  /// \throws std::invalid_argument on an input with the wrong feature count
  template <class Skip>
  void forward_add(const Input& x, Output& y, const Skip& skip) {
    train_forward(x, y, skip);
  }

  const Input& backward(const Output& dL_dy) {
    backward_into(dL_dy, m_dL_dx, Zero{});
    return m_dL_dx;
  }

  /// \brief dL_dx = skip_grad + dL/dx, skip_grad joining the terms that initialise the gate's dL/dx GEMM.
  /// \param dL_dy gradient of the loss with respect to the last forward's output
  /// \param dL_dx receives skip_grad + dL/dx
  /// \param skip_grad added to dL/dx, of x's shape
  /// \throws std::logic_error before any forward
  /// \throws std::invalid_argument when dL_dy's shape is not the output's
  template <class SkipGrad>
  void backward_add(const Output& dL_dy, Input& dL_dx, const SkipGrad& skip_grad) {
    backward_into(dL_dy, dL_dx, skip_grad);
  }

  const Output& infer(const Input& x, Workspace& ws) const {
    infer_into(x, ws.y, Zero{}, ws);
    return ws.y;
  }

  template <class Skip>
  void infer_add(const Input& x, Output& y, const Skip& skip, Workspace& ws) const {
    infer_into(x, y, skip, ws);
  }

  /// Re-draws the parameters as the constructor does, from `g`: H's (see initialize()), then W_T;
  /// b_T back to the gate bias.
  /// \param g generator H's parameters and W_T are drawn from
  void reset_parameters(Generator& g) {
    initialize(m_h, g);
    m_gate.reset_parameters(g);
    m_gate.bias().setConstant(Scalar(m_opt.gate_bias));
  }

  void zero_grad() {
    m_h.zero_grad();
    m_gate.zero_grad();
  }

 private:
  friend detail::VisitsParameters<Highway<H>>;
  template <class Self, class F>
  static void visit_parameters(Self& self, F& f, const ParameterName& prefix) {
    self.m_h.for_each_parameter(f, prefix.child(self.m_h_name));
    self.m_gate.for_each_parameter(f, prefix.child(self.m_t_name));
  }

  struct Zero {};
  struct Init {};

  Highway(Init, H h, Index features, bool given, HighwayOptions options)
      : m_h(std::move(h)),
        m_opt(options),
        m_gate(gate_features(m_h, features, given), gate_features(m_h, features, given)) {
    if (!std::isfinite(options.gate_bias))
      throw std::invalid_argument("Highway: gate_bias must be finite, got " + std::to_string(options.gate_bias));
    // W_T keeps Linear's draw (PyTorch's nn.Linear init); b_T is the constant.
    m_gate.bias().setConstant(Scalar(options.gate_bias));
  }

  /// The gate's size: `features` when given, else H's; checks that H keeps the feature count.
  static Index gate_features(const H& h, Index features, bool given) {
    const Index in = h.in_features(), out = h.out_features();
    if (in >= 0 && out >= 0 && in != out)
      throw std::invalid_argument("Highway: H maps " + std::to_string(in) + " features to " + std::to_string(out) +
                                  "; the highway mixes H(x) with x, so H must keep the feature count");
    const Index known = in >= 0 ? in : out;
    if (!given) {
      if (known < 0)
        throw std::invalid_argument(
            "Highway: H takes any feature count; give the count with Highway(h, features, options)");
      features = known;
    }
    detail::check_features(name, "features", InFeatures, features);
    if (known >= 0 && features != known)
      throw std::invalid_argument("Highway: features is " + std::to_string(features) + " but H takes " +
                                  std::to_string(known));
    return features;
  }

  /// Throws unless H gave an output of x's shape (a Dynamic H may not).
  static void check_h_output(const Output& hx, const Input& x) {
    if (hx.rows() != x.rows() || hx.cols() != x.cols())
      throw std::invalid_argument("Highway: H maps the " + detail::shape_string(x.rows(), x.cols()) + " input to " +
                                  detail::shape_string(hx.rows(), hx.cols()) + "; it must keep the shape");
  }

  /// On one finished block of the gate's pre-activation z: t = σ(z) (t may be z itself), then
  /// y = t ⊙ (H(x) − x) + x (+ skip). Forward and infer share it, so they agree bit for bit.
  template <class Skip>
  static void mix_block(const Output& z, Output& t, const Output& hx, const Input& x, Output& y, const Skip& skip,
                        Index r0, Index rows, Index c0, Index cols) {
    auto tb = t.block(r0, c0, rows, cols).array();
    tb = z.block(r0, c0, rows, cols).array().logistic();
    const auto xb = x.block(r0, c0, rows, cols).array();
    const auto mixed = tb * (hx.block(r0, c0, rows, cols).array() - xb) + xb;
    if constexpr (std::is_same_v<Skip, Zero>)
      y.block(r0, c0, rows, cols).array() = mixed;
    else
      y.block(r0, c0, rows, cols).array() = mixed + skip.block(r0, c0, rows, cols).array();
  }

  template <class Skip>
  void train_forward(const Input& x, Output& y, const Skip& skip) {
    detail::check_input_features(name, in_features(), x);
    const Output& hx = m_h.forward(x);
    check_h_output(hx, x);
    m_x = &x;
    m_hx = &hx;
    m_gate.forward_then(
        x,
        [&](const Output& z) {
          m_t.resize(z.rows(), z.cols());
          y.resize(z.rows(), z.cols());
        },
        [&](const Output& z, Index r0, Index rows, Index c0, Index cols) {
          mix_block(z, m_t, hx, x, y, skip, r0, rows, c0, cols);
        });
  }

  template <class Skip>
  void infer_into(const Input& x, Output& y, const Skip& skip, Workspace& ws) const {
    detail::check_input_features(name, in_features(), x);
    const Output& hx = m_h.infer(x, ws.h);
    check_h_output(hx, x);
    m_gate.infer_then(
        x, ws.t, [&](const Output& z) { y.resize(z.rows(), z.cols()); },
        [&](const Output& z, Index r0, Index rows, Index c0, Index cols) {
          mix_block(z, ws.t.y, hx, x, y, skip, r0, rows, c0, cols);
        });
  }

  template <class SkipGrad>
  void backward_into(const Output& g, Input& dL_dx, const SkipGrad& skip_grad) {
    const Input& x = m_x.get(name);
    detail::check_output_gradient(name, x.rows(), x.cols(), g);
    const Output& hx = *m_hx;  // H's forward output: valid until H's backward below
    const Index rows = x.rows(), cols = x.cols();
    m_tg.resize(rows, cols);
    m_dz.resize(rows, cols);
    // T ⊙ g for H, and dL/dz = g ⊙ (H(x) − x) ⊙ T ⊙ (1 − T) for the gate, by column blocks in cache.
    const Index block = std::max<Index>(1, (Index(1) << 12) / std::max<Index>(rows, 1));
    detail::parallel_for(cols, double(rows) * 6.0, [&](Index c0, Index c1) {
      for (Index b = c0; b < c1; b += block) {
        const Index n = std::min(block, c1 - b);
        const auto t = m_t.middleCols(b, n).array();
        const auto gb = g.middleCols(b, n).array();
        m_tg.middleCols(b, n).array() = t * gb;
        m_dz.middleCols(b, n).array() =
            (gb * (hx.middleCols(b, n).array() - x.middleCols(b, n).array())) * (t * (Scalar(1) - t));
      }
    });
    const Input& dh = m_h.backward(m_tg);
    // dL/dx = (1 − T) ⊙ g + H'ᵀ(T ⊙ g) [+ skip_grad] + W_Tᵀ dL/dz: the first terms initialise the GEMM.
    const auto carry = ((Scalar(1) - m_t.array()) * g.array() + dh.array()).matrix();
    if constexpr (std::is_same_v<SkipGrad, Zero>)
      m_gate.backward_add(m_dz, dL_dx, carry);
    else
      m_gate.backward_add(m_dz, dL_dx, carry + skip_grad);
  }

  H m_h;
  HighwayOptions m_opt;
  Gate m_gate;
  std::string_view m_h_name = "h";
  std::string_view m_t_name = "t";
  CachedInput<Input> m_x;
  const Output* m_hx = nullptr;
  Output m_t;   ///< T of the last forward
  Output m_tg;  ///< T ⊙ dL/dy, H's output gradient
  Output m_dz;  ///< dL/d(W_T x + b_T)
  Output m_y;
  Input m_dL_dx;
};

}  // namespace resblocks
