#pragma once
/// \file
/// \brief DenseBlock: DenseNet's densely connected layers, concatenated in one preallocated buffer.

#include "resblocks/blocks/dense_layer.hpp"
#include "resblocks/core/image_size.hpp"
#include "resblocks/core/layer.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/parameter_visitors.hpp"
#include "resblocks/core/shape_error.hpp"
#include "resblocks/core/types.hpp"
#include "resblocks/layers/conv2d.hpp"

#include <Eigen/Core>

#include <charconv>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace resblocks {

/// \brief The activation storage a DenseBlock holds after a training step, in scalars (P = N·H·W).
/// Not counted: each layer's Conv2d keeps its own im2col chunk buffers (256 positions per part:
/// about 0.5 MB per part and layer at k = 12, whatever the batch).
struct DenseBlockMemory {
  Index features = 0;     ///< the (c0 + L·k) × P feature buffer: x, every layer's output, the block's output
  Index bottlenecks = 0;  ///< each layer's conv1 output, kept for backward: L · 4k × P
  Index shared = 0;     ///< full-size forward buffers the layers share: relu(norm2(·)) 4k × P, conv2's output k × P
  Index chunks = 0;     ///< per-thread chunk buffers (relu(norm1(·)), its gradient, dL/dh: about 256 KB each) and
                        ///< per-chunk partial sums
  Index gradients = 0;  ///< backward: dL/d(features) of the last layer's input c_max × P, dL/dx c0 × P, shared dL/dz2
                        ///< 4k × P, dL/dout k × P
  [[nodiscard]] Index total() const noexcept { return features + bottlenecks + shared + chunks + gradients; }
};

/// \brief A DenseNet block (Huang et al. 2017): `layers` DenseLayers (BN-ReLU-Conv1×1-BN-ReLU-Conv3×3,
/// growth rate k) where layer i sees the concatenation of x and every earlier layer's output; the
/// block's output is [x, f1, …, fL] along channels, c0 + L·k of them. As torchvision's `_DenseBlock`,
/// parameters are named `denselayer1.norm1.weight`, … (1-based).
///
/// Memory-efficient (Pleiss et al. 2017): nothing is concatenated. One (c0 + L·k) × P feature
/// buffer is allocated; x is copied into its first c0 rows once, and layer i reads rows [0, c_i)
/// in place (a strided block, c_i = c0 + i·k) and writes its k output rows into rows [c_i, c_i + k).
/// Each channel's batch statistics are computed once, when it is written, and serve every later
/// layer's norm1. relu(norm1(·)) of the growing input is never stored whole: it is made chunk by
/// chunk of columns in cache, fed to conv1, and recomputed so in backward; relu(norm2(·)) lives in
/// one buffer the layers share. So the forward keeps the feature buffer, each layer's 4k × P
/// bottleneck and two shared 4k × P, k × P buffers; see memory(). Backward runs the layers in
/// reverse on one dL/d(features) buffer: the gradient of layer i's output rows is complete when it
/// is reached, and its dL/d(input) is added into the rows above. Of norm1's dL/dx = scale·g + b·x + c
/// only scale·g is added there; b and c are per-channel constants and x is the same features for
/// every layer, so they are summed over the layers and applied once per channel, when its gradient
/// is needed: one pass over the growing input per layer instead of two.
template <class S = float>
class DenseBlock : public detail::VisitsParameters<DenseBlock<S>>, public detail::VisitsBuffers<DenseBlock<S>> {
 public:
  using Scalar = S;
  static constexpr int InFeatures = Dynamic;
  static constexpr int OutFeatures = Dynamic;
  using Input = Batch<S>;
  using Output = Batch<S>;
  static constexpr std::string_view name = "DenseBlock";

  /// \brief Inference buffers of one caller.
  struct Workspace {
    Output y;
    Eigen::MatrixXd stats;
    std::vector<typename DenseLayer<S>::Coefficients> coefficients;
    Batch<S> h;
    detail::DenseScratch<S> scratch;
    typename Conv2d<S>::Workspace conv;
  };

  /// \brief `layers` layers of growth rate k on `in_channels` (c0) input channels.
  /// \param in_channels the block's input channels c0
  /// \param growth_rate output channels k of each layer
  /// \param layers number of layers L
  /// \param options every layer's bottleneck width and BatchNorm settings
  /// \throws std::invalid_argument unless in_channels and growth_rate are >= 1 and layers >= 0, or on bad `options`
  DenseBlock(Index in_channels, Index growth_rate, Index layers, const DenseLayerOptions& options = {})
      : m_c0(in_channels), m_k(growth_rate) {
    if (in_channels < 1 || growth_rate < 1 || layers < 0)
      throw std::invalid_argument("DenseBlock: in_channels and growth_rate must be >= 1 and layers >= 0, got " +
                                  std::to_string(in_channels) + ", " + std::to_string(growth_rate) + ", " +
                                  std::to_string(layers));
    m_layers.reserve(std::size_t(layers));
    for (Index i = 0; i < layers; ++i) m_layers.emplace_back(in_channels + i * growth_rate, growth_rate, options);
  }

  [[nodiscard]] Index in_features() const noexcept { return m_c0; }
  [[nodiscard]] Index out_features() const noexcept { return m_c0 + size() * m_k; }
  [[nodiscard]] Index growth_rate() const noexcept { return m_k; }
  /// \brief The number of layers.
  /// \returns L
  [[nodiscard]] Index size() const noexcept { return Index(m_layers.size()); }
  DenseLayer<S>& layer(Index i) { return m_layers.at(std::size_t(i)); }
  const DenseLayer<S>& layer(Index i) const { return m_layers.at(std::size_t(i)); }

  /// \brief Sets the input's height and width; the output has the same.
  /// \param in the input's height and width
  /// \returns `in`
  /// \throws std::invalid_argument on an empty `in` (when the block has a layer)
  ImageSize set_image_size(ImageSize in) {
    for (auto& l : m_layers) l.set_image_size(in);
    m_image = in;
    return in;
  }
  [[nodiscard]] ImageSize image_size() const noexcept { return m_image; }

  void set_training(bool training) {
    m_training = training;
    for (auto& l : m_layers) l.set_training(training);
  }
  [[nodiscard]] bool training() const noexcept { return m_training; }

  /// \brief Calls `f(layer)` on every DenseLayer in order.
  /// \param f callable taking a `DenseLayer<S>&`
  template <class F>
  void for_each_layer(F&& f) {
    for (auto& l : m_layers) f(l);
  }

  const Output& forward(const Input& x) {
    check_input(x);
    run(x, m_features, m_stats, m_scratch,
        [&](Index i, ConstView in, View out) { m_layers[std::size_t(i)].forward_view(in, m_stats, m_scratch, out); });
    return m_features;
  }
  const Output& forward(Input&&) = delete;  // for the contract's sake (x itself is copied into the buffer)

  const Input& backward(const Output& dL_dy) {
    if (m_features.cols() == 0) throw std::logic_error("DenseBlock: backward() called before forward()");
    const Index C = m_features.rows(), P = m_features.cols(), L = size();
    detail::check_output_gradient(name, C, P, dL_dy);
    m_dL_dx.resize(m_c0, P);
    if (L == 0) {
      detail::copy_columns(m_dL_dx, dL_dy);
      return m_dL_dx;
    }
    // m_grad: dL/d(features) of rows [0, c_{L-1}), the inputs of the last layer; dL/dy's other rows
    // are read where they are. The norm1 terms b·x + c of every layer done so far wait, summed per
    // channel, in m_pending_*, and are added to a channel's gradient when it is needed.
    m_pending_b.setZero(C);
    m_pending_c.setZero(C);
    m_grad.resize(channels_before(L - 1), P);
    for (Index i = L - 1; i >= 0; --i) {
      const Index c = channels_before(i);
      // Layer i's output rows are complete now: dL/dy's for the last layer, else what the later
      // layers added to them plus their pending terms.
      m_scratch.dout.resize(m_k, P);
      if (i == L - 1)
        detail::copy_columns(m_scratch.dout, const_rows(dL_dy, c, m_k));
      else
        detail::add_pending(const_rows(m_grad, c, m_k), const_rows(m_features, c, m_k), m_pending_b, m_pending_c, c,
                            m_scratch.dout);
      const ConstView base = i == L - 1 ? const_rows(dL_dy, 0, c) : const_rows(m_grad, 0, c);
      m_layers[std::size_t(i)].backward_view(m_scratch.dout, const_rows(m_features, 0, c), m_scratch,
                                             rows(m_grad, 0, c), &base, m_pending_b, m_pending_c);
    }
    detail::add_pending(const_rows(m_grad, 0, m_c0), const_rows(m_features, 0, m_c0), m_pending_b, m_pending_c, 0,
                        m_dL_dx);
    return m_dL_dx;
  }

  const Output& infer(const Input& x, Workspace& ws) const {
    check_input(x);
    ws.coefficients.resize(m_layers.size());
    run(x, ws.y, ws.stats, ws.scratch, [&](Index i, ConstView in, View out) {
      m_layers[std::size_t(i)].infer_view(in, ws.stats, ws.coefficients[std::size_t(i)], ws.h, ws.scratch, ws.conv,
                                          out);
    });
    return ws.y;
  }

  void zero_grad() {
    for (auto& l : m_layers) l.zero_grad();
  }

 private:
  friend detail::VisitsParameters<DenseBlock<S>>;
  template <class Self, class F>
  static void visit_parameters(Self& self, F& f, const ParameterName& prefix) {
    for (Index i = 0; i < self.size(); ++i)
      self.m_layers[std::size_t(i)].for_each_parameter(f, self.layer_name(prefix, i));
  }

  friend detail::VisitsBuffers<DenseBlock<S>>;
  template <class Self, class F>
  static void visit_buffers(Self& self, F& f, const ParameterName& prefix) {
    for (Index i = 0; i < self.size(); ++i)
      self.m_layers[std::size_t(i)].for_each_buffer(f, self.layer_name(prefix, i));
  }

 public:
  /// \brief What the block's activation buffers hold now (after a forward, and a backward for `gradients`).
  /// \returns scalars per kind of buffer
  [[nodiscard]] DenseBlockMemory memory() const {
    DenseBlockMemory m;
    const auto& s = m_scratch;
    m.features = m_features.size();
    for (const auto& l : m_layers) m.bottlenecks += l.kept_activations();
    m.shared = s.z2.size() + s.out.size();
    for (const auto& v : s.z1c) m.chunks += v.size();
    for (const auto& v : s.dz1c) m.chunks += v.size();
    for (const auto& v : s.dhc) m.chunks += v.size();
    m.chunks += s.dw_parts.size() + 2 * s.parts.size();  // the partial sums are doubles
    m.gradients = m_grad.size() + m_dL_dx.size() + s.dz2.size() + s.dout.size();
    return m;
  }

  /// Scalars a concatenating implementation (a torch.cat per layer) keeps for the layers' inputs,
  /// Σ_{i<L} (c0 + i·k)·P; the block's output concatenation comes on top of it.
  /// \param in_channels the block's input channels c0
  /// \param growth_rate output channels k of each layer
  /// \param layers number of layers L
  /// \param columns columns P of the batch (samples × H·W)
  /// \returns Σ_{i<L} (c0 + i·k)·P
  static Index concatenated_inputs(Index in_channels, Index growth_rate, Index layers, Index columns) noexcept {
    Index n = 0;
    for (Index i = 0; i < layers; ++i) n += (in_channels + i * growth_rate) * columns;
    return n;
  }

 private:
  using ConstView = typename DenseLayer<S>::ConstView;
  using View = typename DenseLayer<S>::View;

  [[nodiscard]] Index channels_before(Index i) const noexcept { return m_c0 + i * m_k; }
  /// Rows [r0, r0 + count) of m, a strided view.
  static ConstView const_rows(const Batch<S>& m, Index r0, Index count) {
    return ConstView(m.data() + r0, count, m.cols(), Eigen::OuterStride<>(m.rows()));
  }
  static View rows(Batch<S>& m, Index r0, Index count) {
    return View(m.data() + r0, count, m.cols(), Eigen::OuterStride<>(m.rows()));
  }

  static ParameterName layer_name(const ParameterName& prefix, Index i) {
    char text[32] = "denselayer";
    const auto r = std::to_chars(text + 10, text + sizeof text, i + 1);
    return prefix.child(std::string_view(text, std::size_t(r.ptr - text)));
  }

  void check_input(const Input& x) const {
    detail::check_input_features(name, m_c0, x);
    detail::samples_in(name, m_image, x.rows(), x.cols());
    if (m_training && x.cols() < 2)
      throw std::invalid_argument("DenseBlock: training needs more than one value per channel, got input " +
                                  detail::shape_string(x.rows(), x.cols()));
  }

  /// The forward pass into `features`: x into the first c0 rows, then layer(i, rows [0, c_i), rows
  /// [c_i, c_i + k)) in order; in training mode each channel's batch statistics go into `stats` once.
  template <class LayerStep>
  void run(const Input& x, Batch<S>& features, Eigen::MatrixXd& stats, detail::DenseScratch<S>& scratch,
           const LayerStep& step) const {
    const Index C = out_features(), P = x.cols();
    features.resize(C, P);
    stats.resize(C, 2);
    auto top = rows(features, 0, m_c0);
    detail::copy_columns(top, x);
    if (m_training) detail::row_statistics(x, scratch.parts, stats, 0);
    for (Index i = 0; i < size(); ++i) {
      const Index c = channels_before(i);
      step(i, const_rows(features, 0, c), rows(features, c, m_k));
      if (m_training && i + 1 < size()) detail::row_statistics(const_rows(features, c, m_k), scratch.parts, stats, c);
    }
  }

  Index m_c0, m_k;
  bool m_training = true;
  ImageSize m_image{};
  std::vector<DenseLayer<S>> m_layers;
  Batch<S> m_features;  ///< [x, f1, …, fL]: the block's output
  Batch<S> m_grad;      ///< dL/d(features), rows [0, c_{L-1})
  Eigen::MatrixXd m_stats;
  typename DenseLayer<S>::Vector m_pending_b, m_pending_c;  ///< Σ of the done layers' norm1 b, c per channel
  detail::DenseScratch<S> m_scratch;
  Input m_dL_dx;
};

}  // namespace resblocks
