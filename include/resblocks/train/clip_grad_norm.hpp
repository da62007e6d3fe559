#pragma once
/// \file
/// \brief clip_grad_norm: rescales all gradients of a model so that their joint norm is at most
/// max_norm, as torch.nn.utils.clip_grad_norm_.

#include "resblocks/core/threading.hpp"
#include "resblocks/train/optimizer_state.hpp"
#include "resblocks/train/option_check.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <type_traits>

namespace resblocks {

namespace detail {

/// The sum of part(i0, i1) (a double) over [0, n) in an order that does not depend on the thread count:
/// [0, n) cut into chunks of 2^15 values, 8 lanes, lane j adding up its run of chunks (the j-th eighth
/// of them) in order, then the lanes in order; the lanes run on the threads. Below two chunks it is
/// part(0, n).
template <class Part>
double lane_sum(Index n, Part part) {
  constexpr Index chunk = Index{1} << 15, lanes = 8;
  if (n < 2 * chunk) return part(Index(0), n);
  const Index chunks = (n + chunk - 1) / chunk;
  std::array<double, lanes> sums{};
  parallel_for(lanes, double(n) / lanes, [&](Index j0, Index j1) {
    for (Index j = j0; j < j1; ++j)
      for (Index c = chunks * j / lanes; c < chunks * (j + 1) / lanes; ++c)
        sums[std::size_t(j)] += part(c * chunk, std::min(n, (c + 1) * chunk));
  });
  double total = 0;
  for (double s : sums) total += s;
  return total;
}

}  // namespace detail

/// \brief torch.nn.utils.clip_grad_norm_ on the gradients visited by `model.for_each_parameter`.
///
/// The total norm is the `norm_type`-norm of all gradient entries taken as one vector (p > 0, or
/// infinity: the largest |g|), computed in double. With `clip_coef = max_norm / (total + 1e-6)`,
/// every gradient is multiplied by `clip_coef` when it is below 1; returns the total norm (before
/// clipping). Like torch, a non-finite norm still scales: an infinite one by 0 (so infinite entries
/// become NaN, the others 0), a NaN one by NaN; with `error_if_nonfinite` it throws
/// std::runtime_error instead, before touching a gradient.
/// Throws std::invalid_argument on max_norm < 0 or NaN and on norm_type <= 0 or NaN (torch accepts
/// them with meaningless results). Allocates nothing. A large gradient's sum (detail::lane_sum) and
/// its scaling run on the threads, with the same bits on any thread count.
/// \param model the model whose gradients are clipped in place
/// \param max_norm the largest total norm kept
/// \param norm_type p of the p-norm, or infinity
/// \param error_if_nonfinite throw on a non-finite total norm instead of scaling
/// \returns the total norm before clipping
/// \throws std::invalid_argument on max_norm < 0 or NaN, or norm_type <= 0 or NaN
/// \throws std::runtime_error with error_if_nonfinite, on a non-finite total norm
template <ParameterVisitable Model>
double clip_grad_norm(Model& model, double max_norm, double norm_type = 2.0, bool error_if_nonfinite = false) {
  detail::check_option(max_norm >= 0, "clip_grad_norm", "max_norm", max_norm, "must be >= 0");
  detail::check_option(norm_type > 0, "clip_grad_norm", "norm_type", norm_type, "must be > 0 or infinity");
  const bool inf_norm = std::isinf(norm_type);
  double total = 0;  // max |g| (inf norm), else the sum of |g|^p
  model.for_each_parameter([&](std::string_view, const auto&, const auto& grad) {
    if (grad.size() == 0) return;
    const auto g = detail::flat_array(grad).template cast<double>();
    if (inf_norm) {
      const double m = g.abs().template maxCoeff<Eigen::PropagateNaN>();
      if (!std::isnan(total) && (std::isnan(m) || m > total)) total = m;  // NaN wins, as torch.max
    } else {
      total += detail::lane_sum(g.size(), [&](Index i0, Index i1) {
        const auto part = g.segment(i0, i1 - i0);
        return norm_type == 2.0 ? part.square().sum() : part.abs().pow(norm_type).sum();
      });
    }
  });
  if (!inf_norm) total = norm_type == 2.0 ? std::sqrt(total) : std::pow(total, 1.0 / norm_type);
  if (error_if_nonfinite && !std::isfinite(total)) {
    std::ostringstream os;
    os << "resblocks::clip_grad_norm: the total norm of order " << norm_type << " of the gradients is " << total
       << ", so they cannot be clipped (pass error_if_nonfinite = false to scale them by it anyway)";
    throw std::runtime_error(os.str());
  }
  const double clip_coef = max_norm / (total + 1e-6);
  if (clip_coef < 1 || std::isnan(clip_coef)) {  // torch.clamp(clip_coef, max=1) keeps a NaN
    model.for_each_parameter([&](std::string_view, const auto&, auto& grad) {
      using G = std::remove_cvref_t<decltype(grad)>;
      auto g = detail::flat_array(grad);
      const auto coef = static_cast<typename G::Scalar>(clip_coef);
      // Products only: the same bits in any ranges.
      detail::parallel_for(g.size(), 0.5, [&](Index i0, Index i1) { g.segment(i0, i1 - i0) *= coef; });
    });
  }
  return total;
}

}  // namespace resblocks
