// resblocks_kernels: Conv2d<RESBLOCKS_KERNEL_SCALAR> and its kernels (see core/compiled_kernels.hpp).
// Included by conv2d_float.cpp and conv2d_double.cpp: one translation unit per scalar, built in parallel.
#include "resblocks/layers/conv2d.hpp"

namespace resblocks {
using S = RESBLOCKS_KERNEL_SCALAR;
template class Conv2d<S>;
namespace detail {
template void direct_conv<S>(const DirectConvPlan&, const DirectConvShape&, const S*, const S*, S*);
template void direct_conv_weight<S>(const DirectConvPlan&, const DirectConvShape&, const S*, const S*, S*);
template void winograd_weights<S>(const S*, Index, Index, int, S*);
template void winograd_conv<S>(const DirectConvShape&, WinogradPlan, const S*, const S*, S*, S*);
template void winograd_conv_weight<S>(const DirectConvShape&, int, const S*, const S*, S*, S*, bool);
template void winograd_weight_grad<S>(const S*, Index, Index, int, S*);
template void pad_sample<S>(const S*, Index, Index, Index, Index, Index, Index, S*);
template void im2col<S>(const ConvGeometry&, const S*, Index, Index, S*);
template void col2im<S>(const ConvGeometry&, const S*, Index, Index, Index, S*);
}  // namespace detail
}  // namespace resblocks
