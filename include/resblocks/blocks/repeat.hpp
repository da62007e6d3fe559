#pragma once
/// \file
/// \brief Repeat<Block>: a run-time number of copies of one block type, chained.

#include "resblocks/core/layer.hpp"
#include "resblocks/core/parameter_name.hpp"
#include "resblocks/core/parameter_visitors.hpp"
#include "resblocks/core/shape_error.hpp"
#include "resblocks/core/threading.hpp"
#include "resblocks/core/types.hpp"

#include <concepts>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace resblocks {

/// \brief `count` blocks of one type applied in order, so depth is a run-time value and a
/// 100-block network is not a 100-deep type. Each block takes what the one before gives (the
/// first block of a ResNet stage may change the channel count; the stage as a whole then does). Each block is built
/// separately (its own random initialisation). Parameters are named by position (`0.body.0.weight`), as
/// `nn.Sequential`.
template <class Block>
class Repeat : public detail::VisitsParameters<Repeat<Block>>, public detail::VisitsBuffers<Repeat<Block>> {
  static_assert(Layer<Block>, "resblocks::Repeat: the block must satisfy resblocks::Layer");
  static_assert(std::is_same_v<typename Block::Input, typename Block::Output>,
                "resblocks::Repeat: the block must keep the feature count (Input and Output types equal)");

 public:
  using Scalar = typename Block::Scalar;
  static constexpr int InFeatures = Block::InFeatures;
  static constexpr int OutFeatures = Block::OutFeatures;
  using Input = typename Block::Input;
  using Output = typename Block::Output;
  static constexpr std::string_view name = "Repeat";

  /// \brief Inference buffers: one workspace per block.
  struct Workspace {
    std::vector<typename Block::Workspace> blocks;
  };

  /// \brief `count` default-constructed blocks.
  /// \param count number of blocks
  /// \throws std::invalid_argument on count < 0
  explicit Repeat(Index count) requires std::is_default_constructible_v<Block>
      : Repeat(count, [](Index) { return Block(); }) {}

  /// \brief `count` blocks made by `make(i)`, i = 0 … count-1.
  /// \param count number of blocks
  /// \param make callable returning block i for `make(i)`
  /// \throws std::invalid_argument on count < 0, or when a block does not take the features the one before it gives
  template <class Make>
  requires std::is_invocable_r_v<Block, Make&, Index> Repeat(Index count, Make make) {
    if (count < 0) throw std::invalid_argument("Repeat: count must be >= 0, got " + std::to_string(count));
    m_blocks.reserve(static_cast<std::size_t>(count));
    for (Index i = 0; i < count; ++i) m_blocks.push_back(make(i));
    // Each block must take what the one before it gives (the first of a ResNet stage may change it).
    for (std::size_t i = 1; i < m_blocks.size(); ++i) {
      const Index in = m_blocks[i].in_features(), prev = m_blocks[i - 1].out_features();
      if (in >= 0 && prev >= 0 && in != prev)
        throw std::invalid_argument("Repeat: block " + std::to_string(i) + " takes " + std::to_string(in) +
                                    " features but block " + std::to_string(i - 1) + " gives " + std::to_string(prev));
    }
  }

  [[nodiscard]] std::size_t size() const noexcept { return m_blocks.size(); }

  /// \brief Configures every block for inputs of `size`, in order; returns the last block's output size.
  /// \param size the input's height and width
  /// \returns the last block's output size (`size` when there is no block)
  /// \throws std::invalid_argument when a block rejects its input size
  ImageSize set_image_size(ImageSize size) {
    for (auto& b : m_blocks) size = detail::propagate_image_size(b, size);
    return size;
  }

  /// \brief Tokens per sequence for every attention layer inside (see MultiHeadAttention).
  /// \param length tokens per sequence L
  /// \throws std::invalid_argument when a layer inside rejects it (an attention layer: length < 1)
  void set_sequence_length(Index length) {
    for (auto& b : m_blocks) detail::propagate_sequence_length(b, length);
  }

  /// \brief Calls `f(block)` on every block in order.
  /// \param f callable taking a Block&
  template <class F>
  void for_each_layer(F&& f) {
    for (auto& b : m_blocks) f(b);
  }

  void set_training(bool training) {
    for (auto& b : m_blocks) detail::propagate_training(b, training);
  }

 private:
  friend detail::VisitsBuffers<Repeat<Block>>;
  template <class Self, class F>
  static void visit_buffers(Self& self, F& f, const ParameterName& prefix) {
    for (std::size_t i = 0; i < self.m_blocks.size(); ++i) detail::visit_buffers(self.m_blocks[i], f, prefix.child(i));
  }

 public:
  Block& operator[](std::size_t i) noexcept { return m_blocks[i]; }
  const Block& operator[](std::size_t i) const noexcept { return m_blocks[i]; }
  auto begin() noexcept { return m_blocks.begin(); }
  auto end() noexcept { return m_blocks.end(); }
  auto begin() const noexcept { return m_blocks.begin(); }
  auto end() const noexcept { return m_blocks.end(); }

  [[nodiscard]] Index in_features() const noexcept { return m_blocks.empty() ? -1 : m_blocks.front().in_features(); }
  [[nodiscard]] Index out_features() const noexcept { return m_blocks.empty() ? -1 : m_blocks.back().out_features(); }

  const Output& forward(const Input& x) {
    detail::check_input_features(name, in_features(), x);
    const Input* h = &x;
    for (auto& b : m_blocks) h = &b.forward(*h);
    return *h;
  }
  const Output& forward(Input&&) = delete;  // forward keeps a reference to its input

  template <class Skip>
  void forward_add(const Input& x, Output& y, const Skip& skip) {
    detail::check_input_features(name, in_features(), x);
    if (m_blocks.empty()) {
      y.resize(x.rows(), x.cols());
      detail::parallel_assign(y, skip + x);
      return;
    }
    const Input* h = &x;
    for (std::size_t i = 0; i + 1 < m_blocks.size(); ++i) h = &m_blocks[i].forward(*h);
    detail::forward_add(m_blocks.back(), *h, y, skip);
  }

  const Input& backward(const Output& dL_dy) { return backward_then(dL_dy, detail::NoPrepare{}, detail::NoEpilogue{}); }

  /// backward(dL_dy), then `epilogue(dL_dx, r0, rows, c0, cols)` on each finished block of dL/dx, run
  /// by the first block's pass (Sequential runs the activation before the Repeat there: a ResNet's stem
  /// ReLU); `prepare(dL_dx)` runs first.
  /// \param dL_dy gradient of the loss with respect to the last forward's output
  /// \param prepare called as `prepare(dL_dx)` once dL/dx is sized
  /// \param epilogue called as `epilogue(dL_dx, r0, rows, c0, cols)` on each finished block of dL/dx
  /// \returns dL/dx, in a buffer the first block owns (without blocks: dL_dy itself, or with hooks a copy)
  template <class Prepare, class Epilogue>
  const Input& backward_then(const Output& dL_dy, const Prepare& prepare, const Epilogue& epilogue) {
    return backward_erased(dL_dy, false, prepare, epilogue);
  }

  /// Whether the blocks end in an element-wise layer (detail::SplitsLastLayer) and there is one:
  /// then last_layer() and backward_below_last() may be called.
  /// \returns true when the last block's last layer can run in the next layer's pass
  [[nodiscard]] bool splits_last_layer() const noexcept { return detail::SplitsLastLayer<Block> && !m_blocks.empty(); }
  /// The last block's last layer (see splits_last_layer()): Sequential runs its backward inside the
  /// next layer's pass, then this Repeat from below it (backward_below_last), as Repeat does between
  /// its own blocks.
  /// \returns the last block's last layer
  auto& last_layer() noexcept requires detail::SplitsLastLayer<Block> { return m_blocks.back().last_layer(); }
  /// The last block's layer before its last layer (see splits_last_layer()): a ResNet v1 stage's last
  /// residual, ending in BatchNorm2d. Sequential sums its backward sums in the next layer's pass, on
  /// last_layer()'s dL/dx (detail::backward_summing), as Repeat does between its own blocks.
  /// \returns the last block's before_last_layer()
  auto& before_last_layer() noexcept requires requires(Block& block) { block.before_last_layer(); }
  { return m_blocks.back().before_last_layer(); }
  /// The blocks backward_then's epilogue runs on, when they are whole samples: the first block's
  /// (whose pass runs the hooks), empty without blocks (detail::HasBackwardSampleBlocks). Sequential
  /// then sums the backward sums of a BatchNorm2d before the activation before this Repeat (a ResNet's
  /// stem) in that pass.
  /// \returns the first block's blocks, or empty ones
  [[nodiscard]] detail::SampleBlocks backward_sample_blocks()
      const noexcept requires detail::HasBackwardSampleBlocks<Block> {
    return m_blocks.empty() ? detail::SampleBlocks{} : m_blocks.front().backward_sample_blocks();
  }
  /// backward of every block, the last one from below its last layer, with the hooks of backward_then.
  /// \param dL_dz gradient of the loss with respect to the last block's last layer's input
  /// \param prepare called as `prepare(dL_dx)` once dL/dx is sized
  /// \param epilogue called as `epilogue(dL_dx, r0, rows, c0, cols)` on each finished block of dL/dx
  /// \returns dL/dx, in a buffer the first block owns
  /// \throws std::logic_error without blocks
  template <class Prepare = detail::NoPrepare, class Epilogue = detail::NoEpilogue>
  const Input& backward_below_last(const Output& dL_dz, const Prepare& prepare = {},
                                   const Epilogue& epilogue = {}) requires detail::SplitsLastLayer<Block> {
    if (m_blocks.empty()) throw std::logic_error("Repeat: backward_below_last() without blocks");
    return backward_erased(dL_dz, true, prepare, epilogue);
  }

  template <class SkipGrad>
  void backward_add(const Output& dL_dy, Input& dL_dx, const SkipGrad& skip_grad) {
    if (m_blocks.empty()) {
      dL_dx.resize(dL_dy.rows(), dL_dy.cols());
      detail::parallel_assign(dL_dx, skip_grad + dL_dy);
      return;
    }
    const Output* g = &dL_dy;
    for (std::size_t i = m_blocks.size() - 1; i > 0; --i) g = &m_blocks[i].backward(*g);
    detail::backward_add(m_blocks.front(), *g, dL_dx, skip_grad);
  }

  const Output& infer(const Input& x, Workspace& ws) const {
    detail::check_input_features(name, in_features(), x);
    if (ws.blocks.size() != m_blocks.size()) ws.blocks.resize(m_blocks.size());
    const Input* h = &x;
    for (std::size_t i = 0; i < m_blocks.size(); ++i) h = &m_blocks[i].infer(*h, ws.blocks[i]);
    return *h;
  }

  void zero_grad() {
    for (auto& b : m_blocks) b.zero_grad();
  }

 private:
  /// Whether a block's pass can sum the backward sums of the layer before the previous block's last
  /// layer (detail::backward_summing).
  static constexpr bool summing_before_last = detail::SumsBeforeLastLayer<Block, Block>;

  /// backward_blocks with the callers' hooks erased (detail::ErasedHook), so that the blocks compile
  /// once for every caller's hooks (a ResNet's stem and each stage boundary pass a stage other ones).
  template <class Prepare, class Epilogue>
  const Input& backward_erased(const Output& dL_dy, bool below_last, const Prepare& prepare, const Epilogue& epilogue) {
    if constexpr (detail::has_hooks<Prepare, Epilogue>)
      return backward_blocks(dL_dy, below_last, detail::ErasedPrepare<Input>(prepare),
                             detail::ErasedEpilogue<Input>(epilogue));
    else
      return backward_blocks(dL_dy, below_last, prepare, epilogue);
  }

  /// The backward passes of the blocks, last to first, the hooks on the first block's dL/dx; with
  /// below_last, the last block starts below its last layer.
  template <class Prepare, class Epilogue>
  const Input& backward_blocks(const Output& dL_dy, bool below_last, const Prepare& prepare, const Epilogue& epilogue) {
    if (m_blocks.empty()) {
      if constexpr (detail::has_hooks<Prepare, Epilogue>)
        return detail::run_epilogue_owned(dL_dy, dL_dy, m_dL_dx, prepare, epilogue);
      else
        return dL_dy;
    }
    const Output* g = &dL_dy;
    if constexpr (detail::SplitsLastLayer<Block>) {
      // Block i − 1's last layer runs in block i's pass; block i − 1 then starts below it.
      bool last_done = below_last;  // block i's last layer ran in the pass after it
      for (std::size_t i = m_blocks.size(); i-- > 0;) {
        Block& block = m_blocks[i];
        if (i == 0)
          return last_done ? block.backward_below_last(*g, prepare, epilogue)
                           : block.backward_then(*g, prepare, epilogue);
        if (!detail::can_split_last_layer(m_blocks[i - 1])) {  // a nested Repeat without blocks
          g = last_done ? &block.backward_below_last(*g) : &block.backward(*g);
          last_done = false;
          continue;
        }
        auto& act = m_blocks[i - 1].last_layer();
        const auto run = [&](const auto& act_prepare, const auto& act_epilogue) {
          if (last_done)
            block.backward_below_last(*g, act_prepare, act_epilogue);
          else
            block.backward_then(*g, act_prepare, act_epilogue);
        };
        // The layer before that (a ResNet v1 block's residual, ending in BatchNorm2d) sums its
        // backward sums in the same pass, when it can.
        if constexpr (summing_before_last) {
          g = &detail::backward_summing(block.backward_sample_blocks(), act, m_blocks[i - 1].before_last_layer(), run);
        } else {
          const auto [act_prepare, act_epilogue] = detail::fused_backward_hooks(act);
          run(act_prepare, act_epilogue);
          g = &act.fused_grad();
        }
        last_done = true;
      }
      return *g;
    } else {
      for (std::size_t i = m_blocks.size() - 1; i > 0; --i) g = &m_blocks[i].backward(*g);
      return detail::backward_with_hooks(m_blocks.front(), *g, m_dL_dx, prepare, epilogue);
    }
  }

  friend detail::VisitsParameters<Repeat<Block>>;
  template <class Self, class F>
  static void visit_parameters(Self& self, F& f, const ParameterName& prefix) {
    for (std::size_t i = 0; i < self.m_blocks.size(); ++i) self.m_blocks[i].for_each_parameter(f, prefix.child(i));
  }

  std::vector<Block> m_blocks;
  Input m_dL_dx;  ///< dL/dx for backward_then's hooks when the blocks pass dL/dy through (see run_epilogue_owned)
};

}  // namespace resblocks
