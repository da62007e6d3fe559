// A user-written layer: LayerScale (Touvron et al. 2021, "Going deeper with image transformers"),
// y = γ ⊙ x with a learned per-feature γ started small, so that a residual branch starts near zero.
// It meets resblocks::Layer, so it composes with Sequential/Residual/Repeat, and
// resblocks::testing::check_gradients verifies its hand-written backward.
#include <resblocks/resblocks.hpp>

#include <cstdio>

using namespace resblocks;

/// \brief y = γ ⊙ x per feature; parameter `weight` (γ), initialised to `init`.
template <class S, int N>
class LayerScale {
 public:
  using Scalar = S;
  static constexpr int InFeatures = N;
  static constexpr int OutFeatures = N;
  using Input = Batch<S, N>;
  using Output = Batch<S, N>;
  static constexpr std::string_view name = "LayerScale";
  struct Workspace {
    Output y;
  };

  explicit LayerScale(S init = S(0.1)) : m_gamma(Eigen::Matrix<S, N, 1>::Constant(init)) { m_dL_dgamma.setZero(); }

  Index in_features() const { return N; }
  Index out_features() const { return N; }

  const Output& forward(const Input& x) {
    m_x = &x;  // the contract: x stays alive until backward
    m_y = m_gamma.asDiagonal() * x;
    return m_y;
  }
  const Output& forward(Input&&) = delete;

  const Input& backward(const Output& dL_dy) {
    const Input& x = m_x.get(name);                                       // throws std::logic_error if no forward ran
    m_dL_dgamma += (dL_dy.array() * x.array()).rowwise().sum().matrix();  // accumulate dL/dγ
    m_dL_dx = m_gamma.asDiagonal() * dL_dy;
    return m_dL_dx;
  }

  const Output& infer(const Input& x, Workspace& ws) const {  // const: safe from several threads
    ws.y = m_gamma.asDiagonal() * x;
    return ws.y;
  }

  void zero_grad() { m_dL_dgamma.setZero(); }

  template <class F>
  void for_each_parameter(F&& f, const ParameterName& prefix = {}) {
    f(prefix.child("weight").view(), m_gamma, m_dL_dgamma);
  }
  template <class F>
  void for_each_parameter(F&& f, const ParameterName& prefix = {}) const {
    f(prefix.child("weight").view(), m_gamma, m_dL_dgamma);
  }

 private:
  Eigen::Matrix<S, N, 1> m_gamma, m_dL_dgamma;
  CachedInput<Input> m_x;  // the forward input, kept for backward
  Output m_y;
  Input m_dL_dx;
};

static_assert(Layer<LayerScale<float, 8>>, "LayerScale meets the layer contract");

int main() {
  std::printf("%s\n", build_info().c_str());  // version, Eigen, SIMD instruction sets, threads
  constexpr int D = 8;
  // x + γ ⊙ W2 gelu(W1 x + b1) + b2 — the residual branch starts at a tenth of its size.
  using Block = Residual<
      Sequential<Linear<double, D, 4 * D>, GELU<double, 4 * D>, Linear<double, 4 * D, D>, LayerScale<double, D>>>;
  manual_seed(1);
  Block block;
  Batch<double, D> x = Batch<double, D>::Random(D, 5);

  const auto result = testing::check_gradients(block, x);
  std::printf("gradient check of Residual<... LayerScale>:\n%s", result.report().c_str());
  std::printf("%s\n", result.passed() ? "all gradients agree with finite differences" : "GRADIENT MISMATCH");
  block.for_each_parameter([](std::string_view name, const auto& value, const auto&) {
    std::printf("  %-16.*s %ld values\n", static_cast<int>(name.size()), name.data(), static_cast<long>(value.size()));
  });
  return result.passed() ? 0 : 1;
}
