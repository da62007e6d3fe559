#pragma once
/// \file
/// \brief Generator: the seeded random source of parameter initialisation, bit-reproducible across
/// platforms (its own uniform and normal transforms, not the unspecified std:: distributions).

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <random>

namespace resblocks {

/// \brief A 64-bit Mersenne twister with portable uniform/normal draws.
class Generator {
 public:
  explicit Generator(std::uint64_t seed = 5489u) : m_engine(seed) {}
  void seed(std::uint64_t s) { m_engine.seed(s); }

  /// \brief Uniform in [0, 1) with 53 random bits.
  /// \returns the next draw
  double uniform01() { return static_cast<double>(m_engine() >> 11) * 0x1.0p-53; }
  /// \brief Uniform in [lo, hi).
  /// \param lo lower bound (included)
  /// \param hi upper bound (excluded)
  /// \returns the next draw
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform01(); }
  /// \brief Standard normal (Box–Muller; the second value is discarded, keeping draws stateless).
  /// \returns the next draw
  double normal() {
    double u1 = uniform01();
    while (u1 <= 0.0) u1 = uniform01();
    const double u2 = uniform01();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  std::uint64_t next() { return m_engine(); }

 private:
  std::mt19937_64 m_engine;
};

/// \brief The generator layers draw their initial parameters from (like PyTorch's default generator).
/// \returns the process-wide generator, seeded with 5489 until manual_seed()
inline Generator& default_generator() {
  static Generator generator;
  return generator;
}

/// \brief Re-seeds default_generator(): networks built afterwards get reproducible parameters.
/// \param seed the new seed
inline void manual_seed(std::uint64_t seed) { default_generator().seed(seed); }

/// \brief Fills `m` with values uniform in [-bound, bound).
/// \param m the matrix or vector to fill, column by column
/// \param bound half-width of the interval
/// \param g generator the values are drawn from
template <class Matrix>
void fill_uniform(Matrix& m, double bound, Generator& g) {
  using S = typename Matrix::Scalar;
  for (Eigen::Index j = 0; j < m.cols(); ++j)
    for (Eigen::Index i = 0; i < m.rows(); ++i) m(i, j) = static_cast<S>(g.uniform(-bound, bound));
}

}  // namespace resblocks
