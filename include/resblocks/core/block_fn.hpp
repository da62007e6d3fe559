#pragma once
/// \file
/// \brief BlockFn: a non-owning reference to a callable `f(r0, rows, c0, cols)` over a block of a matrix.

#include <Eigen/Core>

#include <memory>
#include <type_traits>

namespace resblocks::detail {

/// \brief A non-owning, type-erased reference to a block hook `f(r0, rows, c0, cols)`.
///
/// The fused kernels (GEMM prologues and epilogues, the layers' passes) take their hooks as a BlockFn,
/// so each kernel is compiled once per scalar type instead of once per calling lambda: this is what keeps
/// a training program's compile time down. A hook runs once per cache block (thousands of elements),
/// so the indirect call costs nothing measurable. An empty BlockFn does nothing.
/// The referenced callable must outlive the BlockFn (pass temporaries only as arguments).
class BlockFn {
 public:
  using Index = Eigen::Index;

  BlockFn() noexcept = default;

  template <class F>
  requires(!std::is_same_v<std::remove_cvref_t<F>, BlockFn> &&
           std::is_invocable_v<const F&, Index, Index, Index, Index>) BlockFn(const F& f)
  noexcept  // NOLINT(google-explicit-constructor): hooks convert implicitly
      : m_object(std::addressof(f)), m_call([](const void* object, Index r0, Index rows, Index c0, Index cols) {
          (*static_cast<const F*>(object))(r0, rows, c0, cols);
        }) {
    if constexpr (requires { f.zeroed_data(); }) {
      m_zeroed_data = f.zeroed_data();
      m_zeroed_stride = f.zeroed_stride();
    }
  }

  void operator()(Index r0, Index rows, Index c0, Index cols) const {
    if (m_call) m_call(m_object, r0, rows, c0, cols);
  }
  explicit operator bool() const noexcept { return m_call != nullptr; }

  /// Whether the hook only sets the blocks of the matrix at `data` (column stride `stride`) to zero
  /// (a hook with zeroed_data() and zeroed_stride(), as zero_block's): a product into that matrix may
  /// then write its first partial sums instead of adding them to zeros, and skip the hook.
  /// \param data the product's output
  /// \param stride its column stride
  /// \returns true when the hook zeroes exactly that matrix
  [[nodiscard]] bool zeroes(const void* data, Index stride) const noexcept {
    return m_zeroed_data != nullptr && m_zeroed_data == data && m_zeroed_stride == stride;
  }

 private:
  const void* m_object = nullptr;
  void (*m_call)(const void*, Index, Index, Index, Index) = nullptr;
  const void* m_zeroed_data = nullptr;
  Index m_zeroed_stride = 0;
};

}  // namespace resblocks::detail
