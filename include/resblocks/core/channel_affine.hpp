#pragma once
/// \file
/// \brief channel_affine: the per-channel affine passes of batch normalisation (forward y = s∘x + t,
/// backward dL/dx = s∘g + b∘x + c), column by column over channel-major batches.

#include <Eigen/Core>

namespace resblocks::detail {

/// out_j = f_j (+ add_j) for `cols` contiguous columns of `rows` values (`add` may be null, `out` may
/// be an input or add): where a column is whole SIMD packets, packet.template operator()<P>(e, r) gives
/// the packet of f at element e (row r), taken one by one; else expression() gives f as an Eigen array
/// expression of the columns.
template <class S, class Packet, class Expression>
void channel_columns(Eigen::Index rows, Eigen::Index cols, const S* add, S* out, const Packet& packet,
                     const Expression& expression) {
  namespace ei = Eigen::internal;
  using P = typename ei::packet_traits<S>::type;
  constexpr Eigen::Index L = ei::packet_traits<S>::size;
  if (rows % L != 0) {
    Eigen::Map<Eigen::Array<S, Eigen::Dynamic, Eigen::Dynamic>> dst(out, rows, cols);
    if (add)
      dst = expression() + Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, Eigen::Dynamic>>(add, rows, cols);
    else
      dst = expression();
    return;
  }
  for (Eigen::Index j = 0, e = 0; j < cols; ++j)
    for (Eigen::Index r = 0; r < rows; r += L, e += L) {
      P v = packet.template operator()<P>(e, r);
      if (add) v = ei::padd(v, ei::ploadu<P>(add + e));
      ei::pstoreu(out + e, v);
    }
}

/// out_j = s ∘ x_j + t (+ add_j) for the `cols` columns of x (`rows` values each, contiguous); `add`
/// may be null, `out` may be x or add. Where a column is whole packets, packet by packet (Eigen's
/// column-wise broadcast runs a head and tail per column: on 16-row columns it ran 1.25x slower than
/// memcpy, this at memcpy's speed), as pmadd(x, s, t) + add: a fused multiply-add where the target has
/// one. Explicit, so that no caller's inlining context lets the compiler contract it another way
/// (BatchNorm2d's fused and unfused paths must give the same bits). Else Eigen's expression.
template <class S>
void channel_affine(const S* x, const S* s, const S* t, const S* add, S* out, Eigen::Index rows, Eigen::Index cols) {
  namespace ei = Eigen::internal;
  using Columns = Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, Eigen::Dynamic>>;
  using Coefficients = Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, 1>>;
  channel_columns(
      rows, cols, add, out,
      [&]<class P>(Eigen::Index e, Eigen::Index r) {
        return ei::pmadd(ei::ploadu<P>(x + e), ei::ploadu<P>(s + r), ei::ploadu<P>(t + r));
      },
      [&] { return (Columns(x, rows, cols).colwise() * Coefficients(s, rows)).colwise() + Coefficients(t, rows); });
}

/// out_j = max(s ∘ x_j + t, 0) for the `cols` columns of x (`rows` values each, contiguous): a batch
/// normalisation's output through a ReLU, with the bits of channel_affine then ReLU's max (the same
/// operations in the same order).
template <class S>
void channel_affine_relu(const S* x, const S* s, const S* t, S* out, Eigen::Index rows, Eigen::Index cols) {
  namespace ei = Eigen::internal;
  using Columns = Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, Eigen::Dynamic>>;
  using Coefficients = Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, 1>>;
  channel_columns(
      rows, cols, static_cast<const S*>(nullptr), out,
      [&]<class P>(Eigen::Index e, Eigen::Index r) {
        const P y = ei::pmadd(ei::ploadu<P>(x + e), ei::ploadu<P>(s + r), ei::ploadu<P>(t + r));
        return ei::pmax(y, ei::pzero(y));
      },
      [&] {
        return ((Columns(x, rows, cols).colwise() * Coefficients(s, rows)).colwise() + Coefficients(t, rows))
            .cwiseMax(S(0));
      });
}

/// out_j = s ∘ g_j + b ∘ x_j + c (+ add_j) for the `cols` columns of g and x (`rows` values each,
/// contiguous); `add` may be null, `out` may be add. Where a column is whole packets, as
/// (pmadd(x, b, g·s) + c) + add (see the other overload; the order GCC chose for the expression before,
/// so the bits stayed), else Eigen's expression.
template <class S>
void channel_affine(const S* g, const S* s, const S* x, const S* b, const S* c, const S* add, S* out, Eigen::Index rows,
                    Eigen::Index cols) {
  namespace ei = Eigen::internal;
  using Columns = Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, Eigen::Dynamic>>;
  using Coefficients = Eigen::Map<const Eigen::Array<S, Eigen::Dynamic, 1>>;
  channel_columns(
      rows, cols, add, out,
      [&]<class P>(Eigen::Index e, Eigen::Index r) {
        return ei::padd(
            ei::pmadd(ei::ploadu<P>(x + e), ei::ploadu<P>(b + r), ei::pmul(ei::ploadu<P>(g + e), ei::ploadu<P>(s + r))),
            ei::ploadu<P>(c + r));
      },
      [&] {
        return ((Columns(g, rows, cols).colwise() * Coefficients(s, rows)) +
                (Columns(x, rows, cols).colwise() * Coefficients(b, rows)))
                   .colwise() +
               Coefficients(c, rows);
      });
}

}  // namespace resblocks::detail
