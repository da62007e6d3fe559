// The layer contract (core/layer.hpp), checked the same way on every layer and block type: finite-
// difference gradients in double, float against double on the same parameters, infer == forward bit
// for bit, unique non-empty parameter and buffer names, and no heap allocation in a steady-state
// training or inference step. One case per type below; a new layer type adds one line to the list.
#include "support/helpers.hpp"

#include <resblocks/resblocks.hpp>

#include <set>
#include <string>
#include <vector>
// After the other headers: it replaces malloc, which they declare (this executable's only includer).
#include "support/allocation_counter.hpp"

using namespace resblocks;

namespace {

/// A case: `make<S>()` builds the layer, `configure(layer)` sets its image size or sequence length,
/// the input is rows × cols. `gradients`/`infer_is_forward` are false only where the contract says
/// so (Dropout draws a new mask per forward, and its infer never drops).
struct CaseBase {
  static constexpr bool gradients = true;
  static constexpr bool infer_is_forward = true;
  template <class L>
  static void configure(L&) {}
};

struct ImageCase : CaseBase {
  static constexpr Index h = 6, w = 5, n = 2;
  template <class L>
  static void configure(L& layer) {
    if constexpr (ImageLayer<L>) layer.set_image_size({h, w});  // BatchNorm2d takes any image size
  }
};

struct LinearCase : CaseBase {
  static constexpr Index rows = 6, cols = 5;
  template <class S>
  static auto make() {
    return Linear<S>(6, 4);
  }
};
struct StaticLinearCase : CaseBase {
  static constexpr Index rows = 6, cols = 3;
  template <class S>
  static auto make() {
    return Linear<S, 6, 4>();
  }
};
struct ProjectionCase : CaseBase {
  static constexpr Index rows = 5, cols = 4;
  template <class S>
  static auto make() {
    return Projection<S>(5, 3);
  }
};
struct LayerNormCase : CaseBase {
  static constexpr Index rows = 7, cols = 4;
  template <class S>
  static auto make() {
    return LayerNorm<S>(7);
  }
};
struct GeluCase : CaseBase {
  static constexpr Index rows = 5, cols = 4;
  template <class S>
  static auto make() {
    return GELU<S>();
  }
};
struct LeakyReluCase : CaseBase {
  static constexpr Index rows = 5, cols = 4;
  template <class S>
  static auto make() {
    return LeakyReLU<S>();
  }
};
struct SigmoidCase : CaseBase {
  static constexpr Index rows = 5, cols = 4;
  template <class S>
  static auto make() {
    return Sigmoid<S>();
  }
};
struct TanhCase : CaseBase {
  static constexpr Index rows = 5, cols = 4;
  template <class S>
  static auto make() {
    return Tanh<S>();
  }
};
struct IdentityCase : CaseBase {
  static constexpr Index rows = 5, cols = 4;
  template <class S>
  static auto make() {
    return Identity<S>();
  }
};
struct DropoutCase : CaseBase {
  static constexpr bool gradients = false, infer_is_forward = false;
  static constexpr Index rows = 8, cols = 6;
  template <class S>
  static auto make() {
    return Dropout<S>(0.25);
  }
};
struct Conv2dCase : ImageCase {
  static constexpr Index rows = 3, cols = n * h * w;
  template <class S>
  static auto make() {
    return Conv2d<S>(3, 4, 3, {.stride = 2, .padding = 1});
  }
};
struct BatchNorm2dCase : ImageCase {
  static constexpr Index rows = 3, cols = n * h * w;
  template <class S>
  static auto make() {
    return BatchNorm2d<S>(3);
  }
};
struct MaxPool2dCase : ImageCase {
  static constexpr Index rows = 2, cols = n * h * w;
  template <class S>
  static auto make() {
    return MaxPool2d<S>(3, 2, 1);
  }
};
struct AvgPool2dCase : ImageCase {
  static constexpr Index rows = 2, cols = n * h * w;
  template <class S>
  static auto make() {
    return AvgPool2d<S>(2);
  }
};
struct GlobalAvgPoolCase : ImageCase {
  static constexpr Index rows = 3, cols = n * h * w;
  template <class S>
  static auto make() {
    return GlobalAvgPool<S>();
  }
};
struct FlattenCase : ImageCase {
  static constexpr Index rows = 2, cols = n * h * w;
  template <class S>
  static auto make() {
    return Flatten<S>();
  }
};
struct ShortcutCase : ImageCase {
  static constexpr Index rows = 3, cols = n * h * w;
  template <class S>
  static auto make() {
    return Shortcut<S>(3, 4, 2, ShortcutKind::projection);
  }
};
struct AttentionCase : CaseBase {
  static constexpr Index length = 4, rows = 8, cols = 3 * length;
  template <class S>
  static auto make() {
    return MultiHeadAttention<S>(8, 2, {.causal = true});
  }
  template <class L>
  static void configure(L& layer) {
    layer.set_sequence_length(length);
  }
};
struct PositionalEncodingCase : CaseBase {
  static constexpr Index length = 4, rows = 6, cols = 2 * length;
  template <class S>
  static auto make() {
    return PositionalEncoding<S>(6, 8, PositionalEncodingKind::learned);
  }
  template <class L>
  static void configure(L& layer) {
    layer.set_sequence_length(length);
  }
};
struct ResidualMlpCase : CaseBase {
  static constexpr Index rows = 6, cols = 4;
  template <class S>
  static auto make() {
    using Body = Sequential<Linear<S>, ReLU<S>, Linear<S>>;
    return Residual<Body>(Body(Linear<S>(6, 8), ReLU<S>(), Linear<S>(8, 6)));
  }
};
struct HighwayCase : CaseBase {
  static constexpr Index rows = 6, cols = 4;
  template <class S>
  static auto make() {
    return Highway<Linear<S>>(Linear<S>(6, 6), 6);
  }
};
struct RepeatCase : CaseBase {
  static constexpr Index rows = 6, cols = 4;
  template <class S>
  static auto make() {
    using Block = Residual<Sequential<Linear<S>, Tanh<S>>>;
    return Repeat<Block>(3, [](Index) { return Block(Sequential<Linear<S>, Tanh<S>>(Linear<S>(6, 6), Tanh<S>())); });
  }
};
struct BasicBlockCase : ImageCase {
  static constexpr Index rows = 3, cols = n * h * w;
  template <class S>
  static auto make() {
    return BasicBlock<S>(3, 4, 2);
  }
};
struct BottleneckCase : ImageCase {
  static constexpr Index rows = 4, cols = n * h * w;
  template <class S>
  static auto make() {
    return Bottleneck<S>(4, 2);
  }
};
struct PreActBlockCase : ImageCase {
  static constexpr Index rows = 3, cols = n * h * w;
  template <class S>
  static auto make() {
    return PreActBlock<S>(3, 4, 2);
  }
};
struct DenseBlockCase : ImageCase {
  static constexpr Index rows = 4, cols = n * h * w;
  template <class S>
  static auto make() {
    return DenseBlock<S>(4, 2, 2);
  }
};
struct TransitionCase : ImageCase {
  static constexpr Index rows = 4, cols = n * h * w;
  template <class S>
  static auto make() {
    return Transition<S>(4, 2);
  }
};
struct TransformerBlockCase : CaseBase {
  static constexpr Index length = 4, rows = 8, cols = 2 * length;
  template <class S>
  static auto make() {
    return TransformerBlock<S>(8, 2, 12);
  }
  template <class L>
  static void configure(L& layer) {
    layer.set_sequence_length(length);
  }
};

/// Every parameter and buffer name, in visiting order.
template <class L>
std::vector<std::string> names_of(L& layer) {
  std::vector<std::string> names;
  layer.for_each_parameter([&](std::string_view name, const auto&, const auto&) { names.emplace_back(name); });
  if constexpr (HasBuffers<L>)
    layer.for_each_buffer([&](std::string_view name, const auto&) { names.emplace_back(name); }, ParameterName{});
  return names;
}

template <class Case>
void check_contract() {
  auto ld = Case::template make<double>();
  auto lf = Case::template make<float>();
  using LD = decltype(ld);
  using LF = decltype(lf);
  static_assert(Layer<LD> && Layer<LF>);
  Case::configure(ld);
  Case::configure(lf);
  const auto xd = rbtest::random_batch<typename LD::Input>(Case::rows, Case::cols, 11);
  const typename LF::Input xf = xd.template cast<float>();

  // Names: unique and non-empty (the safetensors keys).
  const std::vector<std::string> names = names_of(ld);
  const std::set<std::string> unique(names.begin(), names.end());
  CHECK(unique.size() == names.size());
  CHECK(unique.count("") == 0);
  CHECK(names == names_of(lf));

  // Float against double, on the same parameters.
  rbtest::copy_parameters(ld, lf);
  if constexpr (Case::infer_is_forward) {
    const typename LD::Output yd = ld.forward(xd);
    const typename LF::Output yf = lf.forward(xf);
    CHECK(rbtest::rel_diff(yf, yd) <= 1e-4);

    // infer == forward bit for bit, in the same mode.
    typename LF::Workspace ws;
    CHECK(lf.infer(xf, ws) == yf);
  }

  // No heap allocation once warm (buffers sized by the first steps).
  const typename LF::Output dy = lf.forward(xf) * 1e-2f;
  typename LF::Workspace ws;
  auto train_step = [&] {
    lf.zero_grad();
    lf.forward(xf);
    lf.backward(dy);
  };
  for (int i = 0; i < 2; ++i) {
    train_step();
    lf.infer(xf, ws);
  }
  CHECK(allocations_in([&] {
          for (int i = 0; i < 2; ++i) train_step();
        }) == 0);
  CHECK(allocations_in([&] {
          for (int i = 0; i < 2; ++i) lf.infer(xf, ws);
        }) == 0);

  // Finite-difference gradients in double, for dL/dx and every parameter.
  if constexpr (Case::gradients) rbtest::require_gradients(ld, xd);
}

}  // namespace

TEMPLATE_TEST_CASE("Layer contract: names, float vs double, infer == forward, no allocation, gradients",
                   "[conformance]", LinearCase, StaticLinearCase, ProjectionCase, LayerNormCase, GeluCase,
                   LeakyReluCase, SigmoidCase, TanhCase, IdentityCase, DropoutCase, Conv2dCase, BatchNorm2dCase,
                   MaxPool2dCase, AvgPool2dCase, GlobalAvgPoolCase, FlattenCase, ShortcutCase, AttentionCase,
                   PositionalEncodingCase, ResidualMlpCase, HighwayCase, RepeatCase, BasicBlockCase, BottleneckCase,
                   PreActBlockCase, DenseBlockCase, TransitionCase, TransformerBlockCase) {
  check_contract<TestType>();
}
